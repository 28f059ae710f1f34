"""Masters every worker can read: their bytes content-addressed in the catalog's PostgreSQL.

The worker that paid for a master stores its bytes here before the ledger entry naming them is
recorded (`put`), so an entry is never readable before its bytes are. A worker whose own `<out>/masters`
lacks the file fetches it by sha256 (`fetch_into`): streamed in 1 MiB slices into a temp file beside the
target, hashed on the way, renamed onto the target only when size and sha256 match. Memory stays flat:
a fetch holds one slice, a put one master (read from its file, checked against its recorded sha256).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagegen.errors import MasterChanged
from imagegen.files import open_atomically
from imagegen.models import ImageRef
from imagegen.postgres_connections import PostgresConnections

CHUNK_BYTES = 1 << 20

_INSERT_SQL = ("INSERT INTO imagegen_masters (sha256, bytes, size, format, width, height) "
               "VALUES (%s, %b, %s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING")
_SLICE_SQL = "SELECT substring(bytes FROM %s FOR %s) FROM imagegen_masters WHERE sha256 = %s"


class SharedMasters:
    """The imagegen_masters table (created with the ledger's schema, imagegen/sql/ledger.postgres.sql)."""

    def __init__(self, connections: PostgresConnections):
        self.connections = connections

    def has(self, sha256: str) -> bool:
        with self.connections.connection("reading") as conn:
            return conn.execute("SELECT 1 FROM imagegen_masters WHERE sha256 = %s", (sha256,)).fetchone() is not None

    def put(self, image: ImageRef) -> None:
        """Store `image`'s file under its sha256, unless it is stored already. Only the recorded bytes are
        stored: a file whose size or sha256 differs from `image` raises MasterChanged."""
        if self.has(image.sha256):
            return
        data = Path(image.path).read_bytes()
        if len(data) != image.bytes or hashlib.sha256(data).hexdigest() != image.sha256:
            raise MasterChanged(f"{Path(image.path).name}: bytes differ from the recorded sha256 {image.sha256[:12]} "
                                "before they were shared; nothing was recorded, the next claim pays again")
        with self.connections.connection("storing into") as conn:
            conn.execute(_INSERT_SQL, (image.sha256, data, len(data), image.format, image.width, image.height))

    def fetch_into(self, sha256: str, target: Path) -> bool:
        """Write the master stored under `sha256` to `target` (atomically, verified); False when none is stored.

        Stored bytes that do not hash to their key raise MasterChanged (nothing is written): they are
        reported, never used and never silently paid for again."""
        with self.connections.connection("reading") as conn:
            row = conn.execute("SELECT size FROM imagegen_masters WHERE sha256 = %s", (sha256,)).fetchone()
            if row is None:
                return False
            size = int(row[0])
            digest, written = hashlib.sha256(), 0
            with open_atomically(target) as fh:
                for offset in range(0, size, CHUNK_BYTES):
                    piece = conn.execute(_SLICE_SQL, (offset + 1, CHUNK_BYTES, sha256), binary=True).fetchone()
                    chunk = bytes(piece[0]) if piece is not None and piece[0] is not None else b""
                    digest.update(chunk)
                    fh.write(chunk)
                    written += len(chunk)
                if written != size or digest.hexdigest() != sha256:  # raising here removes the temp file
                    raise MasterChanged(f"imagegen_masters row {sha256[:12]}: its {written} bytes do not hash to "
                                        "their sha256; delete that row and the ledger entries naming it to pay "
                                        "for a new master")
        return True
