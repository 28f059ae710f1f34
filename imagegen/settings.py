"""Configuration for the no-server path, read from the environment by pydantic-settings.

Everything has an embedded default: with no variables set, a run uses the `local` provider, a local
asset folder and a SQLite catalog inside the output folder. Secrets are SecretStr: their repr and
str are masked, so a settings object can be logged without leaking them.

Every number has its valid range on its Field; `load_settings` turns pydantic's ValidationError into a
SettingsError with one line per bad variable, named as the user set it (`IMAGEGEN_LOCAL_MASTER_SIZE:
must be a whole number from 64 to 8192, got 'abc'`). Only numbers are echoed back: any other value
could be, or contain, a secret.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from imagegen.errors import SettingsError

ENV_PREFIX = "IMAGEGEN_"


class ImagegenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    output_dir: Path = Field(Path("imagegen-output"), description="Where assets, catalog.db and gallery.html go")
    provider: str | None = Field(None, description="Override the brief's provider: local, nvidia, nim, neuroflash")
    catalog_url: str | None = Field(
        None, description="sqlite:///path, postgresql://..., or 'supabase'; default <output_dir>/catalog.db")
    max_provider_calls: int | None = Field(None, ge=0, description="Per-run budget of provider calls")
    local_master_size: int = Field(2048, ge=64, le=8192,
                                   description="Side of the square master the local provider renders")
    # Daily image budgets (seed 000 "COST OPTIMIZATION": NVIDIA's free tier makes 100 images a day), counted
    # across runs in the catalog's database: see imagegen/daily_images.py
    nvidia_images_per_day: int | None = Field(
        None, ge=0, description="Images the nvidia provider may make per UTC day, over every run on this catalog; "
                                "a run that would pass it stops before spending")
    neuroflash_images_per_day: int | None = Field(
        None, ge=0, description="Images the neuroflash provider may make per UTC day, over every run on this catalog")
    ledger_lease_seconds: float = Field(
        120.0, ge=1, le=3600, allow_inf_nan=False,
        description="With a PostgreSQL catalog: how long a paid call's claim outlives a worker that stopped "
                    "renewing it (killed), before another worker takes the call over")

    # Event-triggered runs (untrusted payloads) are confined to these; see imagegen/event_inputs.py
    output_root: Path = Field(Path("imagegen-output"), description="Events may only write under this folder")
    briefs_root: Path = Field(Path("."), description="Events may only read brief files under this folder")
    brief_trusted_hosts: str = Field("", description="Comma-separated hosts an event's brief URL may reach over "
                                                     "http or at a private address")

    # Pixel work on a cluster: see flows/render_cluster.py
    dask_address: str | None = Field(None, description="Dask scheduler the size-set flow renders on, e.g. "
                                                       "tcp://10.0.0.5:8786; unset: the worker's own threads")

    # NVIDIA (hosted API and self-hosted NIM)
    nvidia_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NVIDIA_API_KEY", "IMAGEGEN_NVIDIA_API_KEY"))
    nvidia_base_url: str = "https://ai.api.nvidia.com/v1/genai"
    nvcf_status_url: str = "https://api.nvcf.nvidia.com/v2/nvcf/pexec/status"
    nvcf_assets_url: str = "https://api.nvcf.nvidia.com/v2/nvcf/assets"
    nim_url: str | None = None
    nvidia_rate_per_minute: float = Field(40.0, gt=0, allow_inf_nan=False)
    nvcf_poll_deadline_seconds: float = Field(600.0, gt=0, allow_inf_nan=False,
                                              description="How long one call polls a 202-accepted NVCF request")
    vlm_base_url: str | None = None
    vlm_model: str | None = None

    # neuroflash
    neuroflash_client_id: str | None = Field(
        None, validation_alias=AliasChoices("NEUROFLASH_CLIENT_ID", "IMAGEGEN_NEUROFLASH_CLIENT_ID"))
    neuroflash_client_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NEUROFLASH_CLIENT_SECRET", "IMAGEGEN_NEUROFLASH_CLIENT_SECRET"))
    neuroflash_api_url: str = "https://app.neuroflash.com/api"
    neuroflash_token_url: str = "https://id.neuroflash.com/oauth/v2/token"
    neuroflash_workspace_id: str | None = None
    neuroflash_rate_per_minute: float = Field(30.0, gt=0, allow_inf_nan=False)

    # Stores
    supabase_url: str | None = Field(None, validation_alias=AliasChoices("SUPABASE_URL", "IMAGEGEN_SUPABASE_URL"))
    supabase_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SUPABASE_KEY", "IMAGEGEN_SUPABASE_KEY"))
    supabase_bucket: str = "media-assets"
    gitlab_url: str | None = Field(None, validation_alias=AliasChoices("GITLAB_URL", "IMAGEGEN_GITLAB_URL"))
    gitlab_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GITLAB_TOKEN", "IMAGEGEN_GITLAB_TOKEN"))
    gitlab_project: str | None = None

    # C2PA Content Credentials (optional): sign every published file with this identity
    c2pa_cert: Path | None = Field(None, description="PEM certificate chain, leaf first (IMAGEGEN_C2PA_CERT)")
    c2pa_key: Path | None = Field(None, description="PEM private key of the leaf (IMAGEGEN_C2PA_KEY)")
    c2pa_algorithm: str = Field("ES256", description="ES256/384/512, PS256/384/512 or ED25519")
    c2pa_timestamp_url: str | None = Field(None, description="RFC 3161 time-stamp authority; none by default")


def images_per_day(settings: ImagegenSettings) -> dict[str, int | None]:
    """Provider name -> its daily image budget (None: counted, not limited)."""
    return {"nvidia": settings.nvidia_images_per_day, "neuroflash": settings.neuroflash_images_per_day}


def load_settings(**overrides) -> ImagegenSettings:
    """The settings from the environment, with `overrides` (a flow's parameters) on top.

    Raises SettingsError naming each bad variable (or override) and what it must be.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ImagegenSettings(**given)
    except ValidationError as exc:
        raise settings_error(exc, given) from None


def settings_error(exc: ValidationError, overrides: dict[str, Any] | None = None) -> SettingsError:
    """One (variable, reason) per error of `exc`; an override is named by its parameter name."""
    problems = []
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0]) if error["loc"] else ""
        name, field = _field_of(key)
        where = name if name in (overrides or {}) else _variable_of(key, name, field)
        problems.append((where, _reason(error, field)))
    return SettingsError(problems)


def _field_of(key: str) -> tuple[str, FieldInfo | None]:
    """The field behind an error's location: its name, or one of its aliases (NVIDIA_API_KEY)."""
    fields = ImagegenSettings.model_fields
    if key in fields:
        return key, fields[key]
    for name, field in fields.items():
        if isinstance(field.validation_alias, AliasChoices) and key in field.validation_alias.choices:
            return name, field
    return key, None


def _variable_of(key: str, name: str, field: FieldInfo | None) -> str:
    """The environment variable the user set: an alias as written, else IMAGEGEN_<FIELD>."""
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        choices = [c for c in field.validation_alias.choices if isinstance(c, str)]
        if key in choices:
            return key
        set_now = [c for c in choices if c.upper() in {k.upper() for k in os.environ}]
        return (set_now or choices)[0]
    return f"{ENV_PREFIX}{name.upper()}"


def _types_of(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _reason(error: Any, field: FieldInfo | None) -> str:
    """What the value must be, and (for numbers only) what it was."""
    kinds = _types_of(field.annotation) if field is not None else ()
    if field is not None and (int in kinds or float in kinds):
        return f"must be {_number_range(field, whole=int in kinds)}, got {_shown(error.get('input'))}"
    if SecretStr in kinds:
        return "is not a valid value (a secret: not shown)"
    return f"is not valid ({error['msg']}; the value is not shown)"


def _number_range(field: FieldInfo, *, whole: bool) -> str:
    # pydantic keeps Field(ge=..., le=..., gt=..., allow_inf_nan=...) as one metadata object each
    bounds = {name: getattr(constraint, name) for constraint in field.metadata
              for name in ("ge", "gt", "le", "allow_inf_nan") if hasattr(constraint, name)}
    kind = "a whole number" if whole else "a number" if bounds.get("allow_inf_nan", True) else "a finite number"
    if "ge" in bounds and "le" in bounds:
        return f"{kind} from {bounds['ge']} to {bounds['le']}"
    if "ge" in bounds:
        return f"{kind}, {bounds['ge']} or more"
    if "gt" in bounds:
        return f"{kind} greater than {bounds['gt']}"
    return kind


def _shown(value: Any) -> str:
    text = repr(value if isinstance(value, str) else str(value))
    return text if len(text) <= 40 else text[:37] + "...'"
