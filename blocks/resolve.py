"""Turn names from a brief or the CLI into blocks: `local`, `nvidia`, `nim`, `neuroflash`, or a saved
block `<block-type-slug>/<block-name>`. Blocks built here read credentials from the environment
(pydantic-settings), so the no-server path needs no saved blocks at all.

A name that cannot be used is reported against where it came from: a brief field (BriefError, the
brief is invalid), a flag such as `--provider` (UsageError) or an environment variable such as
IMAGEGEN_PROVIDER (SettingsError: the environment is wrong, the brief is fine). Credentials missing
for a store or catalog are always the environment's problem, whoever named the store."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prefect.blocks.core import Block

from imagegen.errors import BriefError, ImagegenError, ProviderNotConfigured, SettingsError, UsageError
from imagegen.redaction import mask_url
from imagegen.settings import ImagegenSettings
from imagegen_flows.blocks.catalog import CatalogBlock, SqliteCatalogBlock
from imagegen_flows.blocks.gitlab import GitLabCredentials, GitLabUploads
from imagegen_flows.blocks.postgres import PostgresCatalogBlock
from imagegen_flows.blocks.providers import ImageProviderBlock, LocalProvider
from imagegen_flows.blocks.storage import AssetStoreBlock, LocalAssetFolder
from imagegen_flows.blocks.supabase import SupabaseCatalogBlock, SupabaseCredentials, SupabaseStorage

PROVIDER_NAMES = ("local", "nvidia", "nim", "neuroflash")
_SAVED_BLOCK = re.compile(r"^[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9_-]*$")
SavedBlock = TypeVar("SavedBlock", bound=Block)
_ENVIRONMENT_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def problem_at(where: str, reason: str) -> ImagegenError:
    """The error for a bad value at `where`: a flag (`--provider`) is a usage error, an environment
    variable (UPPER_CASE) a settings error, anything else a field of the brief."""
    if where.startswith("--"):
        return UsageError(where, reason)
    if _ENVIRONMENT_VARIABLE.match(where):
        return SettingsError([(where, reason)])
    return BriefError([(where, reason)])


_api_wait: Callable[[], None] | None = None


def wait_for_api_with(wait: Callable[[], None] | None) -> None:
    """What a saved block's load waits for first: the CLI's temporary Prefect API, started in the background
    while the run's pre-flight checks go on (None: the API is there already)."""
    global _api_wait
    _api_wait = wait


def load_saved_block(name: str, field: str, expected: type[SavedBlock]) -> SavedBlock:
    """A saved block named `<block-type-slug>/<block-name>`, or an error naming `field` (see problem_at).

    `expected` is only used for isinstance, so the abstract block bases are fine here; mypy rejects an
    abstract class for type[T] all the same (it cannot know that nothing instantiates it), hence the
    `type: ignore[type-abstract]` at the callers.
    """
    if not _SAVED_BLOCK.match(name):
        # a URL without its scheme lands here (IMAGEGEN_CATALOG_URL=user:pw@host/db): shown masked
        raise problem_at(field, f"{mask_url(name)!r} is not a saved block name like <block-type-slug>/<block-name>")
    if _api_wait is not None:
        _api_wait()
    try:
        block = Block.load(name)
    except (ValueError, KeyError):
        raise problem_at(field, f"no saved block {name!r} on the Prefect API; {saved_blocks_like(expected)}") from None
    if not isinstance(block, expected):
        raise problem_at(field, f"saved block {name!r} is a {type(block).__name__}, not a {expected.__name__}; "
                                f"{saved_blocks_like(expected)}")
    return block


def saved_blocks_like(expected: type[SavedBlock]) -> str:
    """The saved blocks that would fit, and the block types they could be, for an error about a wrong name:
    a typo in a slug is then one look away from its fix."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.dispatch import get_registry_for_type

    import imagegen_flows.blocks.neuroflash
    import imagegen_flows.blocks.nvidia  # noqa: F401 - registers the block types imported lazily elsewhere

    types = sorted(slug for slug, cls in (get_registry_for_type(Block) or {}).items()
                   if isinstance(cls, type) and issubclass(cls, expected))
    try:
        with get_client(sync_client=True) as client:
            documents = client.read_block_documents(include_secrets=False)
    except Exception:  # noqa: BLE001 - the hint is a courtesy; the error it decorates is the point
        documents = []
    names = sorted(f"{d.block_type.slug}/{d.name}" for d in documents
                   if d.block_type is not None and d.block_type.slug in types and not d.is_anonymous)
    return (f"saved: {', '.join(names) if names else 'none'}; block types: {', '.join(types) or 'none'}")


def provider_block(name: str, settings: ImagegenSettings, model: str | None = None,
                   field: str | None = None) -> ImageProviderBlock:
    """A provider block for `name`, configured from the environment. `field` says where the name came
    from, for the error when it is unknown (default: the brief's provider.name / provider.block)."""
    if "/" in name:
        return load_saved_block(name, field or "provider.block", ImageProviderBlock)  # type: ignore[type-abstract]
    if name == "local":
        return LocalProvider(master_size=settings.local_master_size)
    if name in ("nvidia", "nim"):
        from imagegen_flows.blocks.nvidia import nvidia_provider_from_settings

        return nvidia_provider_from_settings(settings, model=model, self_hosted=name == "nim")
    if name == "neuroflash":
        from imagegen_flows.blocks.neuroflash import neuroflash_provider_from_settings

        return neuroflash_provider_from_settings(settings, model=model)
    raise problem_at(field or "provider.name", f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)} "
                                               "or a saved block as <block-type-slug>/<block-name>")


def provider_chain(choice, settings: ImagegenSettings, override: str | None = None,
                   override_source: str = "IMAGEGEN_PROVIDER") -> list[ImageProviderBlock]:
    """The primary provider followed by the brief's fallbacks, without repeats. `override_source`
    names where `override` came from (IMAGEGEN_PROVIDER, or `--provider`) for its errors."""
    blocks = []
    for _, member in provider_chain_members(choice, settings, override, override_source):
        if isinstance(member, ProviderNotConfigured):
            raise member
        blocks.append(member)
    return blocks


def provider_chain_members(choice, settings: ImagegenSettings, override: str | None = None,
                           override_source: str = "IMAGEGEN_PROVIDER"
                           ) -> list[tuple[str, ImageProviderBlock | ProviderNotConfigured]]:
    """provider_chain's members as (name, block), where a member whose credentials or endpoint are missing
    from the environment is (name, its ProviderNotConfigured error): the chain's pre-flight skips it
    when another member works. A name that cannot be resolved at all still raises here, and so does the
    first member's error when no member is configured."""
    primary = override or choice.block or choice.name
    names = [primary, *[n for n in choice.fallback if n != primary]]
    members: list[tuple[str, ImageProviderBlock | ProviderNotConfigured]] = []
    for i, name in enumerate(names):
        try:
            members.append((name, provider_block(name, settings, model=choice.model if i == 0 else None,
                                                 field=override_source if i == 0 and override else None)))
        except ProviderNotConfigured as not_configured:
            members.append((name, not_configured))
    missing = [member for _, member in members if isinstance(member, ProviderNotConfigured)]
    if len(missing) == len(members):
        raise missing[0]
    return members


def store_block(name: str, settings: ImagegenSettings, out_dir: Path,
                field: str = "publish") -> AssetStoreBlock:
    """`local` (a folder in the output folder), `supabase`, `gitlab`, or a saved block slug/name."""
    if "/" in name:
        return load_saved_block(name, field, AssetStoreBlock)  # type: ignore[type-abstract]
    if name == "local":
        return LocalAssetFolder(path=str(out_dir / "assets"), store_name="local")
    if name == "supabase":
        credentials = _supabase_credentials(settings, field, "store 'supabase'",
                                            "the brief is valid; set them or choose another store")
        return SupabaseStorage(credentials=credentials, bucket=settings.supabase_bucket)
    if name == "gitlab":
        missing = [n for n, v in (("GITLAB_URL", settings.gitlab_url), ("GITLAB_TOKEN", settings.gitlab_token),
                                  ("IMAGEGEN_GITLAB_PROJECT", settings.gitlab_project)) if not v]
        if missing:
            raise SettingsError([(field, f"store 'gitlab' needs {', '.join(missing)} in the environment "
                                         "(the brief is valid; set them or choose another store)")])
        # with a PostgreSQL catalog, the upload index is its gitlab_uploads table: every worker sees every upload
        return GitLabUploads(credentials=GitLabCredentials(url=settings.gitlab_url, token=settings.gitlab_token),
                             project=settings.gitlab_project, index_path=str(out_dir / "gitlab-uploads.json"),
                             index_dsn=shared_database_dsn(settings))
    raise BriefError([(field, f"unknown store {name!r}; known: local, supabase, gitlab, or a saved block "
                              "<block-type-slug>/<block-name>")])


def publish_stores(publish, settings: ImagegenSettings, out_dir: Path) -> tuple[AssetStoreBlock, AssetStoreBlock]:
    """The brief's small- and large-file stores, checked before anything is generated or written."""
    return (store_block(publish.small_store, settings, out_dir, "publish.small_store"),
            store_block(publish.large_store, settings, out_dir, "publish.large_store"))


def quarantine_block(out_dir: Path) -> AssetStoreBlock:
    return LocalAssetFolder(path=str(out_dir / "quarantine"), store_name="quarantine")


CATALOG_VARIABLE = "IMAGEGEN_CATALOG_URL"


def shared_database_dsn(settings: ImagegenSettings) -> str | None:
    """The PostgreSQL every worker shares, when IMAGEGEN_CATALOG_URL names one (a URL or a saved block)."""
    url = settings.catalog_url or ""
    if url.startswith(("postgres://", "postgresql://")):
        return url
    if "/" in url and "://" not in url:
        block = load_saved_block(url, CATALOG_VARIABLE, CatalogBlock)  # type: ignore[type-abstract]
        return block.dsn.get_secret_value() if isinstance(block, PostgresCatalogBlock) else None
    return None


def catalog_block(settings: ImagegenSettings, out_dir: Path) -> CatalogBlock:
    """IMAGEGEN_CATALOG_URL, or `<out>/catalog.db`. A URL that cannot be used is a SettingsError."""
    url = settings.catalog_url
    if url is None:
        return SqliteCatalogBlock(path=str(out_dir / "catalog.db"))
    if url.startswith("sqlite:///"):
        return SqliteCatalogBlock(path=url.removeprefix("sqlite:///"))
    if url == "supabase":
        return SupabaseCatalogBlock(credentials=_supabase_credentials(settings, CATALOG_VARIABLE, "catalog 'supabase'"))
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresCatalogBlock(dsn=url)
    if "/" in url and "://" not in url:
        return load_saved_block(url, CATALOG_VARIABLE, CatalogBlock)  # type: ignore[type-abstract]
    raise SettingsError([(CATALOG_VARIABLE, f"{mask_url(url)!r} is not a catalog; use sqlite:///path, "
                                            "postgresql://user:password@host/db, supabase, or a saved "
                                            "catalog block <block-type-slug>/<block-name>")])


def _supabase_credentials(settings: ImagegenSettings, where: str, what: str, hint: str = "") -> SupabaseCredentials:
    """Credentials from SUPABASE_URL and SUPABASE_KEY; missing ones are the environment's problem
    (SettingsError at `where`, naming the variables)."""
    missing = [n for n, v in (("SUPABASE_URL", settings.supabase_url), ("SUPABASE_KEY", settings.supabase_key))
               if not v]
    if missing:
        raise SettingsError([(where, f"{what} needs {' and '.join(missing)} in the environment"
                                     + (f" ({hint})" if hint else ""))])
    return SupabaseCredentials(url=settings.supabase_url, key=settings.supabase_key)
