"""Fixtures for the store and catalog tests: the Supabase and GitLab emulators, and a real PostgreSQL.

PostgreSQL: $IMAGEGEN_TEST_POSTGRES_DSN when set; otherwise a throwaway cluster from the PostgreSQL
binaries (/usr/lib/postgresql/<major>/bin or PATH) in a temp dir, on a free loopback port with trust
auth, stopped and removed at session end. initdb and postgres refuse to run as root, so as root the
cluster belongs to the `postgres` user and every binary runs through `runuser -u postgres --`.
If no server can be had the tests that need it FAIL (never skip) with the reason and the server log.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators.gitlab import GitLabEmulator
from tests.emulators.serve import serve_asgi
from tests.emulators.supabase import SupabaseEmulator

SUPABASE_KEY = "sb-SENTINEL"
GITLAB_TOKEN = "glpat-SENTINEL"
SECRETS = (SUPABASE_KEY, GITLAB_TOKEN)


# -- emulators -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def supabase_emulator() -> Iterator[tuple[SupabaseEmulator, str]]:
    emulator = SupabaseEmulator(key=SUPABASE_KEY)
    with serve_asgi(emulator.app) as base_url:
        yield emulator, base_url


@pytest.fixture
def supabase_emu(supabase_emulator) -> Iterator[tuple[SupabaseEmulator, str]]:
    """The session's Supabase emulator, emptied and with faults off for each test."""
    emulator, base_url = supabase_emulator
    emulator.objects.clear()
    emulator.calls.clear()
    emulator.faults.reset()
    emulator.public_buckets = set(emulator.buckets)
    emulator.max_upload_bytes = 50 * 1024 * 1024
    with emulator.db_lock:
        emulator.db.execute("DELETE FROM media_assets")
    yield emulator, base_url
    emulator.faults.reset()


def make_supabase_client(base_url: str, key: str = SUPABASE_KEY, timeout: float = 5.0):
    """The client the SupabaseCredentials block hands out, pointed at the emulator."""
    from imagegen_flows.blocks.supabase import SupabaseCredentials

    return SupabaseCredentials(url=base_url, key=key, timeout_seconds=timeout).get_client()


@pytest.fixture
def gitlab_emu() -> Iterator[tuple[GitLabEmulator, str]]:
    emulator = GitLabEmulator(token=GITLAB_TOKEN)
    with serve_asgi(emulator.app) as base_url:
        yield emulator, base_url


def make_gitlab_client(base_url: str, token: str = GITLAB_TOKEN, timeout: float = 5.0):
    import gitlab

    return gitlab.Gitlab(base_url, private_token=token, timeout=timeout, retry_transient_errors=True)


# -- PostgreSQL ------------------------------------------------------------------------------------

def _postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    preferred = [c for c in candidates if c.startswith("/usr/lib/postgresql/15/")] + candidates
    for directory in preferred:
        if (Path(directory) / "initdb").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ThrowawayCluster:
    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="imagegen-pg-"))
        self.data, self.sockets, self.log = self.root / "data", self.root / "sock", self.root / "server.log"
        self.port = _free_port()
        self.sockets.mkdir()
        if self.as_root:
            shutil.chown(self.root, user="postgres", group="postgres")
            shutil.chown(self.sockets, user="postgres", group="postgres")

    def _run(self, binary: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / binary), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)

    def start(self) -> str:
        steps = [
            ("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
             "--locale=C"),
            ("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o",
             f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off "
             "-c synchronous_commit=off -c full_page_writes=off", "start"),
        ]
        for step in steps:
            done = self._run(*step)
            if done.returncode != 0:
                raise RuntimeError(f"{step[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                                   f"\n--- server log ---\n{self.server_log()}")
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE imagegen_test")
        return f"postgresql://postgres@127.0.0.1:{self.port}/imagegen_test"

    def server_log(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    """A DSN of a database this session may create schemas in."""
    if dsn := os.environ.get("IMAGEGEN_TEST_POSTGRES_DSN"):
        yield dsn
        return
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL is needed for the catalog tests: install the server binaries "
                    "(apt-get install postgresql) or set IMAGEGEN_TEST_POSTGRES_DSN", pytrace=False)
    cluster: _ThrowawayCluster | None = None
    try:
        try:
            cluster = _ThrowawayCluster(bin_dir)
            dsn = cluster.start()
        except Exception as exc:  # noqa: BLE001 - any failure here is reported, never skipped
            pytest.fail(f"could not start a throwaway PostgreSQL from {bin_dir} (as root it runs as the "
                        f"'postgres' user via runuser): {exc}", pytrace=False)
        yield dsn
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def postgres_dsn(postgres_server_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test: tests never see each other's rows."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_server_dsn else "?"
    yield f"{postgres_server_dsn}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def no_secrets_in_logs(caplog):
    """Every log record of the test, down to DEBUG (httpx, the clients), free of the stores' credentials."""
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:
        assert secret not in caplog.text
