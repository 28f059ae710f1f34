"""GitLab blocks: credentials and a project as the large-image asset store (seed 000: files over 2 MB).

prefect-gitlab's `GitLabCredentials` is not reused: its client authenticates with `oauth_token`, calls
`/user` on every `get_client()` (an extra request, and it fails for tokens without read_user), and sets
neither a timeout nor transient-error retries; it also pulls in tenacity for repository cloning we do
not use. This block's client sends `PRIVATE-TOKEN`, with a timeout and bounded retries.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from imagegen.catalog.base import PREFLIGHT_TIMEOUT_SECONDS
from imagegen.redaction import mask_url_fields
from imagegen.stores.base import AssetStore
from imagegen_flows.blocks.storage import AssetStoreBlock


class GitLabCredentials(CredentialsBlock):
    """A GitLab instance URL and an access token with the `api` scope.

    Example:
        ```python
        from imagegen_flows.blocks.gitlab import GitLabCredentials
        gl = GitLabCredentials.load("BLOCK_NAME").get_client()
        ```
    """

    _block_type_name = "Imagegen GitLab Credentials"
    _block_type_slug = "imagegen-gitlab-credentials"
    _description = "GitLab instance URL and access token for publishing assets."

    url: str = Field("https://gitlab.com", title="GitLab URL", description="Instance base URL (env GITLAB_URL)")
    token: SecretStr = Field(..., title="Access token",
                             description="Personal, project or group access token with the api scope "
                                         "(env GITLAB_TOKEN)")
    timeout_seconds: float = Field(60.0, gt=0, title="Timeout", description="HTTP timeout per request")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def get_client(self) -> Any:
        """A ready `gitlab.Gitlab` that retries 429 (honouring Retry-After), 5xx and timeouts."""
        import gitlab

        return gitlab.Gitlab(self.url, private_token=self.token.get_secret_value(), timeout=self.timeout_seconds,
                             retry_transient_errors=True)


class GitLabUploads(AssetStoreBlock):
    """A GitLab project that receives published assets, as project uploads or generic package files.

    Example:
        ```python
        from imagegen_flows.blocks.gitlab import GitLabUploads
        store = GitLabUploads.load("BLOCK_NAME").get_store()
        ```
    """

    _block_type_name = "Imagegen GitLab Uploads"
    _block_type_slug = "imagegen-gitlab-uploads"
    _description = "Publishes assets into a GitLab project (uploads or generic packages), never overwriting."

    credentials: GitLabCredentials = Field(..., title="Credentials", description="GitLab instance and token")
    project: str = Field(..., title="Project", description="Numeric id or 'group/project' path "
                                                           "(env IMAGEGEN_GITLAB_PROJECT)")
    mode: Literal["uploads", "generic_packages"] = Field(
        "uploads", title="Mode",
        description="'uploads': Markdown uploads (seed 000; keys tracked in an index). 'generic_packages': "
                    "files addressed by key with server-side sha256, idempotent across machines")
    package_name: str = Field("imagegen-assets", title="Package name",
                              description="Generic package holding the files (generic_packages mode)")
    index_path: str | None = Field(None, title="Upload index file",
                                   description="JSON file mapping keys to uploads (uploads mode); without it "
                                               "reruns upload again instead of recognising earlier uploads")
    index_dsn: SecretStr | None = Field(
        None, title="Upload index database",
        description="A PostgreSQL connection string (the catalog's): the index is then its gitlab_uploads table, "
                    "shared by every worker, and the index file is not used")
    max_retries: int = Field(3, ge=0, le=10, title="Max retries",
                             description="Retries per request after 429, 5xx or a timeout")
    store_name: str = Field("gitlab", title="Store name", description="Name recorded in the catalog's `store` column")

    def get_store(self) -> AssetStore:
        from imagegen.stores.gitlab import GitLabUploadStore
        from imagegen.stores.gitlab_index import JsonFileUploadIndex, UploadIndex, shared_upload_index

        index: UploadIndex = (shared_upload_index(self.index_dsn.get_secret_value(), self.project)
                              if self.index_dsn is not None else JsonFileUploadIndex(self.index_path))
        return GitLabUploadStore(self.credentials.get_client(), self.project, mode=self.mode,
                                 package_name=self.package_name, index=index,
                                 name=self.store_name, max_retries=self.max_retries)

    def check_store(self) -> None:
        """The project's pre-flight through a client with the short pre-flight timeout and no retries."""
        from imagegen.stores.gitlab import GitLabUploadStore

        timeout = min(self.credentials.timeout_seconds, PREFLIGHT_TIMEOUT_SECONDS)
        quick = self.credentials.model_copy(update={"timeout_seconds": timeout})
        GitLabUploadStore(quick.get_client(), self.project, mode=self.mode, package_name=self.package_name,
                          name=self.store_name, max_retries=0).preflight()
