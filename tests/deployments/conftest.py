"""A real Prefect server (`prefect server start` on loopback) and a real process worker, once per session.

The server and every Prefect CLI it is driven with get their own PREFECT_HOME, never the one of the
in-process test harness (tests/conftest.py). Subprocesses get PREFECT_API_URL through their
environment; in-process client calls go through `Server.client()`.

Order of the session: `imagegen setup` twice (`setup_runs`), `prefect deploy --all` (`deployed`),
then one `prefect worker start --pool imagegen-process` (`worker`) for the tests that need runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from tests.polling import tail, wait_for  # noqa: F401 (re-exported to the tests)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SENTINEL_KEY = "nvapi-SENTINEL-setup"
POOL = "imagegen-process"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k not in ("NVIDIA_API_KEY", "PYTEST_CURRENT_TEST")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"), PYTHONUNBUFFERED="1")
    return env


def stop(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group the fixture started, then SIGKILL what is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


@dataclass
class Server:
    url: str  # the API URL, http://127.0.0.1:<port>/api
    home: Path  # the server's own PREFECT_HOME
    client_home: Path  # PREFECT_HOME of every CLI and worker talking to it
    log: Path
    worker_log: Path = field(init=False)

    def __post_init__(self):
        self.worker_log = self.client_home.parent / "worker.log"

    def env(self, **extra: str) -> dict[str, str]:
        env = _base_env(self.client_home)
        env["PREFECT_API_URL"] = self.url
        env.update(extra)
        return env

    def run(self, *args: str, cwd: Path = REPO, timeout: float = 120, **extra_env: str
            ) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=cwd, env=self.env(**extra_env), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    @contextlib.contextmanager
    def client(self):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            with get_client(sync_client=True) as client:
                yield client

    @staticmethod
    def spawn(args: list[str], output: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        """A long-running command in its own process group, stdout and stderr to `output`; `stop` ends it."""
        with open(output, "w") as out:
            return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    stop = staticmethod(stop)

    def wait(self, condition: Callable[[], Any], timeout: float, what: str, interval: float = 1) -> Any:
        return wait_for(condition, timeout, interval=interval, what=what, diagnostics=self.diagnostics)

    def diagnostics(self) -> str:
        return "\n".join(filter(None, [tail(self.worker_log), tail(self.log, 30)]))

    def wait_for_final(self, flow_run_id, timeout: float = 240):
        def final():
            with self.client() as client:
                run = client.read_flow_run(flow_run_id)
            return run if run.state is not None and run.state.is_final() else None

        return wait_for(final, timeout, interval=1, what=f"flow run {flow_run_id} to finish",
                        diagnostics=self.diagnostics)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefect-server")
    home, client_home, log = root / "server-home", root / "client-home", root / "server.log"
    home.mkdir()
    client_home.mkdir()
    port = free_port()
    env = _base_env(home)
    env.update(
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS="30",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    process = Server.spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           log, cwd=root, env=env)
    url = f"http://127.0.0.1:{port}/api"
    server = Server(url=url, home=home, client_home=client_home, log=log)

    def healthy():
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited with {process.returncode}\n{tail(log)}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 120, what="the Prefect server's /api/health", diagnostics=lambda: tail(log))
        yield server
    finally:
        stop(process)


@dataclass
class SetupRuns:
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    state_after_first: dict
    state_after_second: dict


def server_state(server: Server) -> dict:
    """What `imagegen setup` writes, with the timestamps that any rewrite would move."""
    with server.client() as client:
        block_types = {t.slug: (t.updated, t.description) for t in client.read_block_types()
                       if t.slug.startswith("imagegen-")}
        all_documents = client.read_block_documents()
        documents = {(d.block_type.slug if d.block_type else None, d.name): (d.updated, d.block_schema_id)
                     for d in all_documents if not d.is_anonymous}
        documents["anonymous"] = sum(1 for d in all_documents if d.is_anonymous)
        limits = {lim.name: (lim.limit, lim.slot_decay_per_second, lim.active, lim.updated)
                  for lim in client.read_global_concurrency_limits(limit=100, offset=0)}
        pool = client.read_work_pool(POOL)
        pools = {pool.name: (pool.type, pool.updated)}
    return {"block_types": block_types, "documents": documents, "limits": limits, "pools": pools}


@pytest.fixture(scope="session")
def setup_runs(prefect_server) -> SetupRuns:
    """`imagegen setup` twice against the fresh server, with a sentinel NVIDIA key in the environment."""
    first = prefect_server.run(str(BIN / "imagegen"), "setup", NVIDIA_API_KEY=SENTINEL_KEY)
    assert first.returncode == 0, first.stdout + first.stderr
    after_first = server_state(prefect_server)
    second = prefect_server.run(str(BIN / "imagegen"), "setup", NVIDIA_API_KEY=SENTINEL_KEY)
    assert second.returncode == 0, second.stdout + second.stderr
    return SetupRuns(first, second, after_first, server_state(prefect_server))


@pytest.fixture(scope="session")
def deployed(prefect_server, setup_runs) -> subprocess.CompletedProcess:
    """One `prefect deploy --all` from the repository root, after setup created the work pool."""
    return prefect_server.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all", timeout=180)


@pytest.fixture(scope="session")
def worker(prefect_server, deployed, tmp_path_factory):
    """One process worker polling imagegen-process every second; its flow runs log at INFO to worker.log.

    Event-triggered runs may read briefs and write output only under the session's temporary folder
    (every test's tmp_path is inside it), as an operator would confine them to a shared volume."""
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    roots = str(tmp_path_factory.getbasetemp())
    env = prefect_server.env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="2",
                             PREFECT_LOGGING_LEVEL="INFO", IMAGEGEN_OUTPUT_ROOT=roots, IMAGEGEN_BRIEFS_ROOT=roots)
    process = Server.spawn([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                           prefect_server.worker_log, cwd=prefect_server.client_home, env=env)

    def registered():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited with {process.returncode}\n{prefect_server.diagnostics()}")
        with prefect_server.client() as client:
            return client.read_workers_for_work_pool(POOL)

    try:
        wait_for(registered, 60, what="the worker to register", diagnostics=prefect_server.diagnostics)
        yield process
    finally:
        stop(process, grace=15)


@pytest.fixture
def write_brief() -> Callable[..., Path]:
    return _write_brief


WATCH = {"subject": "a luxury wrist watch on a marble plinth", "style": "product", "lighting": "product",
         "composition": "rule_of_thirds", "mood": "elegant"}


def _write_brief(folder: Path, campaign: str = "deploy-test", subjects: list[dict] | None = None) -> Path:
    """A quick brief: 1024 px masters from the local provider (one per subject; default: the watch),
    one small target."""
    brief = {
        "campaign": campaign,
        "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50", "#ffffff"]},
        "subjects": subjects or [WATCH],
        "size_sets": [],
        "targets": [{"name": "square_webp", "platform": "web", "width": 640, "height": 640, "format": "WEBP"}],
        "provider": {"name": "local", "master_width": 1024, "master_height": 1024},
        "quality": {"max_edit_attempts": 1},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "brief.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path
