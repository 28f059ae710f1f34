"""A folder on local disk as an asset store (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from imagegen.models import sha256_file
from imagegen.stores.base import AssetStore


class LocalFolderStore(AssetStore):
    def __init__(self, root: str | Path, name: str = "local", base_url: str | None = None):
        self.root = Path(root).resolve()
        self.name = name
        self.base_url = base_url.rstrip("/") if base_url else None

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"store key {key!r} escapes the store root")
        return path

    def stored_sha256(self, key: str) -> str | None:
        path = self._path(key)
        return sha256_file(path) if path.is_file() else None

    def write(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)  # readers never see half a file

    def url_for(self, key: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{key}"
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
