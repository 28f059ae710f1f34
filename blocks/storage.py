"""Asset store blocks: where published files go. A local folder is the embedded default."""

from __future__ import annotations

from abc import ABC, abstractmethod

from prefect.blocks.core import Block
from pydantic import Field

from imagegen.stores.base import AssetStore


class AssetStoreBlock(Block, ABC):
    """Base type of every asset store block: `get_store()` returns an imagegen AssetStore."""

    _block_type_name = "Asset Store"

    @abstractmethod
    def get_store(self) -> AssetStore:
        """A store with idempotent, never-overwriting `put_file`."""

    def check_store(self) -> None:
        """Before any spend: reachable and writable (AssetStore.preflight, short timeout, at most one
        attempt, nothing left written). Raises StoreError with the reason."""
        self.get_store().preflight()


class LocalAssetFolder(AssetStoreBlock):
    """A folder on this machine's disk (or a shared mount) that holds published assets.

    Example:
        ```python
        from imagegen_flows.blocks.storage import LocalAssetFolder
        store = LocalAssetFolder.load("BLOCK_NAME").get_store()
        ```
    """

    _block_type_name = "Imagegen Local Asset Folder"
    _block_type_slug = "imagegen-local-asset-folder"
    _description = "Publishes assets into a local or mounted folder."

    path: str = Field(..., description="Folder that receives <campaign>/<asset>/<variant>.<ext> files")
    store_name: str = Field("local", description="Name recorded in the catalog's `store` column")
    base_url: str | None = Field(None, description="Public URL prefix when the folder is served over HTTP; "
                                                   "file:// URLs otherwise")

    def get_store(self) -> AssetStore:
        from imagegen.stores.local import LocalFolderStore

        return LocalFolderStore(self.path, name=self.store_name, base_url=self.base_url)
