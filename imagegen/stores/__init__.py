"""Asset stores: where published files live. Local folder by default; Supabase and GitLab plug in."""

from imagegen.stores.base import AssetStore, SizeRouter
from imagegen.stores.local import LocalFolderStore

__all__ = ["AssetStore", "LocalFolderStore", "SizeRouter"]
