"""`imagegen setup`: everything a Prefect server needs before deployments run, in one idempotent step.

1. registers every imagegen block type (so the UI can create them),
2. saves blocks built from the environment (only those whose variables are set); credentials are
   saved once, under their own name, and referenced by the blocks that use them,
3. creates the global concurrency limits that mirror the providers' rate limits,
4. creates the `imagegen-process` work pool.

Run twice, the second run changes nothing: each object is compared and written only when it differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen.settings import ImagegenSettings

if TYPE_CHECKING:  # for annotations only: this module imports prefect inside the functions that use it
    from prefect.blocks.core import Block

WORK_POOL = "imagegen-process"


@dataclass
class SetupReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def record(self, what: str, outcome: str) -> None:
        getattr(self, outcome).append(what)

    def lines(self) -> list[str]:
        return ([f"created   {w}" for w in self.created] + [f"updated   {w}" for w in self.updated]
                + [f"unchanged {w}" for w in self.unchanged])


def block_types() -> list[type[Block]]:
    from imagegen_flows.blocks.catalog import SqliteCatalogBlock
    from imagegen_flows.blocks.gitlab import GitLabCredentials, GitLabUploads
    from imagegen_flows.blocks.neuroflash import NeuroflashCredentials, NeuroflashImageProvider
    from imagegen_flows.blocks.nvidia import NvidiaCredentials, NvidiaImageProvider, NvidiaVisionReviewer
    from imagegen_flows.blocks.postgres import PostgresCatalogBlock
    from imagegen_flows.blocks.providers import LocalProvider
    from imagegen_flows.blocks.storage import LocalAssetFolder
    from imagegen_flows.blocks.supabase import SupabaseCatalogBlock, SupabaseCredentials, SupabaseStorage

    return [LocalProvider, NvidiaCredentials, NvidiaImageProvider, NvidiaVisionReviewer, NeuroflashCredentials,
            NeuroflashImageProvider, LocalAssetFolder, SupabaseCredentials, SupabaseStorage, SupabaseCatalogBlock,
            GitLabCredentials, GitLabUploads, SqliteCatalogBlock, PostgresCatalogBlock]


def blocks_from_environment(settings: ImagegenSettings) -> dict[str, Any]:
    """Block document name -> block, for each service whose variables are set (and `local` always)."""
    from imagegen_flows.blocks.providers import LocalProvider
    from imagegen_flows.blocks.resolve import provider_block, store_block

    found: dict[str, Any] = {"local": LocalProvider(master_size=settings.local_master_size)}
    if settings.nvidia_api_key or settings.nim_url:
        found["nvidia"] = provider_block("nim" if settings.nim_url and not settings.nvidia_api_key else "nvidia",
                                         settings)
        from imagegen_flows.blocks.nvidia import vision_reviewer_from_settings

        reviewer = vision_reviewer_from_settings(settings)
        if reviewer is not None:
            found["nvidia-vlm"] = reviewer
    if settings.neuroflash_client_id and settings.neuroflash_client_secret:
        found["neuroflash"] = provider_block("neuroflash", settings)
    if settings.supabase_url and settings.supabase_key:
        found["supabase"] = store_block("supabase", settings, settings.output_dir.resolve())
    if settings.gitlab_url and settings.gitlab_token and settings.gitlab_project:
        found["gitlab"] = store_block("gitlab", settings, settings.output_dir.resolve())
    return found


def _public(value: Any) -> Any:
    """A block's model_dump without Prefect's private bookkeeping (`_block_document_id`, ...), at any depth."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value]
    return value


def _same_block(existing, wanted) -> bool:
    # model_dump keeps SecretStr objects, which compare by their secret values; a loaded block's dump
    # also carries its document id and name, which a block built from the environment has not
    return (type(existing) is type(wanted) and _public(existing.model_dump()) == _public(wanted.model_dump())
            and _credentials_document(existing) == _credentials_document(wanted))


def _credentials_document(block) -> Any:
    # equal values are not enough: a block saved by an older setup holds an inline copy of its credentials,
    # and must be saved again to refer to the named credentials block instead
    return getattr(getattr(block, "credentials", None), "_block_document_id", None)


def save_block(name: str, block, report: SetupReport) -> None:
    try:
        existing = type(block).load(name)
    except ValueError:  # Prefect raises ValueError for a missing block document
        existing = None
    label = f"block {block.get_block_type_slug()}/{name}"
    if existing is not None and _same_block(existing, block):
        report.record(label, "unchanged")
        return
    block.save(name, overwrite=True)
    report.record(label, "created" if existing is None else "updated")


def credentials_name(credentials: Block) -> str:
    """The saved name of a credentials block: its service (`imagegen-nvidia-credentials` -> `nvidia`)."""
    return credentials.get_block_type_slug().removeprefix("imagegen-").removesuffix("-credentials")


def referencing_saved_credentials(block, saved: dict[str, Block], report: SetupReport):
    """`block` with its credentials saved once under their own name and referenced, not copied inline
    (as AwsCredentials inside S3Bucket): the NVIDIA provider and reviewer share one key, and rotating it
    is one edit of `imagegen-nvidia-credentials/nvidia` in the UI. `saved` remembers this run's saves."""
    from prefect.blocks.core import Block

    credentials = getattr(block, "credentials", None)
    if not isinstance(credentials, Block):
        return block
    name = credentials_name(credentials)
    if name not in saved:
        save_block(name, credentials, report)
        # loaded, it carries the document id the parent refers to (a sync call here: no coroutine)
        saved[name] = type(credentials).load(name)  # type: ignore[assignment]
    return block.model_copy(update={"credentials": saved[name]})


def ensure_block_types(client, report: SetupReport) -> None:
    """Register each block type and its schema, but only when the server's copy is missing or differs
    (`register_type_and_schema` would otherwise rewrite the block type on every run)."""
    from prefect.blocks.core import _should_update_block_type  # the check register_type_and_schema uses
    from prefect.exceptions import ObjectNotFound

    for block_type in block_types():
        slug = block_type.get_block_type_slug()
        try:
            on_server = client.read_block_type_by_slug(slug)
        except ObjectNotFound:
            on_server = None
        changed = on_server is None or _should_update_block_type(block_type._to_block_type(), on_server)
        if not changed:
            try:
                client.read_block_schema_by_checksum(checksum=block_type._calculate_schema_checksum(),
                                                     version=block_type.get_block_schema_version())
            except ObjectNotFound:
                changed = True
        if changed:
            block_type.register_type_and_schema()
        report.record(f"block type {slug}", "created" if on_server is None else "updated" if changed else "unchanged")


def rate_limits(settings: ImagegenSettings) -> dict[str, tuple[int, float]]:
    """name -> (limit, slot decay per second): a rate limit of N calls per minute per provider account."""
    return {
        "imagegen-nvidia-rate": (max(1, int(settings.nvidia_rate_per_minute)), settings.nvidia_rate_per_minute / 60),
        "imagegen-neuroflash-rate": (max(1, int(settings.neuroflash_rate_per_minute)),
                                     settings.neuroflash_rate_per_minute / 60),
    }


def ensure_rate_limits(client, settings: ImagegenSettings, report: SetupReport) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    for name, (limit, decay) in rate_limits(settings).items():
        label = f"concurrency limit {name} ({limit}/min)"
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay))
            report.record(label, "created")
            continue
        if current.limit == limit and current.active and abs((current.slot_decay_per_second or 0) - decay) < 1e-9:
            report.record(label, "unchanged")
        else:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=decay, active=True))
            report.record(label, "updated")


def ensure_work_pool(client, report: SetupReport) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from imagegen.errors import ImagegenError

    try:
        pool = client.read_work_pool(WORK_POOL)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
        report.record(f"work pool {WORK_POOL} (process)", "created")
        return
    if pool.type != "process":  # a pool's type cannot be changed; deleting it is the operator's call
        raise ImagegenError(f"work pool {WORK_POOL} exists with type {pool.type!r}, not 'process': delete it "
                            f"(prefect work-pool delete {WORK_POOL}) and run imagegen setup again")
    report.record(f"work pool {WORK_POOL} (process)", "unchanged")


def run_setup(settings: ImagegenSettings) -> SetupReport:
    from prefect.client.orchestration import get_client

    report = SetupReport()
    with get_client(sync_client=True) as client:
        ensure_block_types(client, report)
        saved_credentials: dict[str, Block] = {}
        for name, block in blocks_from_environment(settings).items():
            save_block(name, referencing_saved_credentials(block, saved_credentials, report), report)
        ensure_rate_limits(client, settings, report)
        ensure_work_pool(client, report)
    return report
