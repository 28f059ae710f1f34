"""Configuration for the no-server path, read from the environment by pydantic-settings.

Everything has an embedded default: with no variables set, a run uses the `local` provider, a local
asset folder and a SQLite catalog inside the output folder. Secrets are SecretStr: their repr and
str are masked, so a settings object can be logged without leaking them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ImagegenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGEN_", extra="ignore", populate_by_name=True)

    output_dir: Path = Field(Path("imagegen-output"), description="Where assets, catalog.db and gallery.html go")
    provider: str | None = Field(None, description="Override the brief's provider: local, nvidia, nim, neuroflash")
    catalog_url: str | None = Field(
        None, description="sqlite:///path, postgresql://..., or 'supabase'; default <output_dir>/catalog.db")
    max_provider_calls: int | None = Field(None, description="Per-run budget of provider calls")
    local_master_size: int = Field(2048, description="Side of the square master the local provider renders")

    # NVIDIA (hosted API and self-hosted NIM)
    nvidia_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NVIDIA_API_KEY", "IMAGEGEN_NVIDIA_API_KEY"))
    nvidia_base_url: str = "https://ai.api.nvidia.com/v1/genai"
    nvcf_status_url: str = "https://api.nvcf.nvidia.com/v2/nvcf/pexec/status"
    nvcf_assets_url: str = "https://api.nvcf.nvidia.com/v2/nvcf/assets"
    nim_url: str | None = None
    nvidia_rate_per_minute: float = 40.0
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
    neuroflash_rate_per_minute: float = 30.0

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


def load_settings(**overrides) -> ImagegenSettings:
    return ImagegenSettings(**{k: v for k, v in overrides.items() if v is not None})
