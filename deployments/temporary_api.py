"""The temporary Prefect API of `imagegen run` without PREFECT_API_URL: started first, out of the terminal's Ctrl-C.

Its start (a Python process, Prefect's server import, the database migrations of a fresh PREFECT_HOME)
used to begin after our own imports and checks and took 3-10 s more. Now it overlaps them:

1. `prepare_temporary_api()`, the command's first step: unless PREFECT_API_URL is in the environment, a
   process starts importing Prefect's server (`api_process`); it touches nothing yet.
2. `launch_temporary_api()`, once Prefect's settings are loaded (the profile or a .env file may name an
   API): it is told to serve, on a free port, with those settings, or to end when an API is configured.
   PREFECT_API_URL is set to it in this process (and nowhere else), so Prefect never starts a second one.
3. `await_temporary_api()`, after the pre-flight checks (or before a saved block is read): wait until it
   answers; a slow or failed start is one clear error.

It leads a session of its own: a terminal's Ctrl-C (sent to the whole group) used to kill it first, and
the interrupted run then retried its API calls for minutes. It ends only when we end it: at exit
(atexit), or from `stop_temporary_api()` when an interrupt ends the run.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

# A fresh PREFECT_HOME migrates its database first: 15-40 s on a busy 2-core machine, over Prefect's 20 s.
STARTUP_TIMEOUT_SECONDS = 120
PORTS = range(8000, 9000)  # where Prefect looks for a free port for its temporary server
PORT_TAKEN = 3  # uvicorn's exit code when it cannot bind (another process took the port meanwhile)
_OURS_ONLY = ("PREFECT_API_URL", "PREFECT_UI_URL")  # set here by _point_prefect_at, for this process only
# Prefect's ephemeral mode, as it starts its own temporary server: no UI; of the background services only
# those that record events, task runs and flow runs (`RunInEphemeralServers`). And no registration of
# Prefect's block types in a fresh database (~0.8 s): they serve the UI's block forms, which a temporary
# API has not, and a run loads only blocks saved before (their types were saved with them). Not memoized
# either (the memo would say "done"), so a `prefect server start` on this PREFECT_HOME still registers them.
# Prefect's usage telemetry stays off in a temporary API unless the user's environment turns it on: it is
# a server of one run, not an installation, and its first heartbeat on a fresh home printed an ERROR with
# a traceback on the run's terminal ("database is locked"; "Name or service not known" offline).
SERVER_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
SERVER_SETTINGS = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                   "PREFECT_API_BLOCKS_REGISTER_ON_START": "false", "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}


def server_environment() -> dict[str, str]:
    """Ours and the ephemeral mode; not the variables that point this process at an earlier server."""
    return {**SERVER_DEFAULTS, **{k: v for k, v in os.environ.items() if k not in _OURS_ONLY}, **SERVER_SETTINGS}


class TemporaryApi:
    """The server process, its port once told to serve, and whether it answered."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "imagegen_flows.deployments.api_process"],
                                        stdin=subprocess.PIPE, env=server_environment(),
                                        start_new_session=True)
        self.port: int | None = None
        self.ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def serve(self, environment: dict[str, str], tried: set[int]) -> None:
        """Tell the process to serve on a free port with `environment` (Prefect's settings, as strings)."""
        import prefect

        self.port = free_port(tried)
        tried.add(self.port)
        order = {"port": self.port, "app_dir": str(Path(prefect.__file__).parent.parent), "environment": environment}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(order) + "\n").encode())
            self.process.stdin.close()
        except OSError:  # it ended already: await_temporary_api reports its exit code
            pass

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (Prefect's own stop)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_api: TemporaryApi | None = None
_environment: dict[str, str] = {}  # the Prefect settings the server is given
_environment_here: dict[str, str] = {}  # what this process sets besides PREFECT_API_URL


def prepare_temporary_api() -> None:
    """Start importing Prefect's server in a process of its own, unless PREFECT_API_URL is set."""
    global _api
    if _api is None and not os.environ.get("PREFECT_API_URL"):
        _api = TemporaryApi()
        atexit.register(stop_temporary_api)


def launch_temporary_api() -> None:
    """Serve the temporary API when no Prefect API is configured (the environment, the profile or a .env
    file), and point this process's Prefect settings at it; otherwise end the prepared process."""
    global _api
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        if _api is not None and _api.port is None:  # prepared for nothing: an API is configured
            _api.stop()
            _api = None
        return
    if _api is None:
        prepare_temporary_api()
    assert _api is not None
    _environment.update(settings.to_environment_variables(exclude_unset=True))
    if not settings.ui_url:  # it serves no UI: no "View at" link to it, as before (a UI the user named stays)
        _environment_here["PREFECT_UI_URL"] = ""
    _api.serve(_environment, set())
    _point_prefect_at(_api)


def _point_prefect_at(api: TemporaryApi) -> None:
    from prefect.context import refresh_global_settings_context

    os.environ.update(_environment_here, PREFECT_API_URL=api.url)
    refresh_global_settings_context()


def free_port(tried: set[int]) -> int:
    """A port of Prefect's range that nothing listens on now (uvicorn may still lose it: PORT_TAKEN)."""
    for _ in range(50):
        port = random.choice(PORTS)
        if port in tried:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port for the temporary Prefect API")


def await_temporary_api() -> None:
    """Wait until the temporary API answers, so a slow or failed start is one clear error here instead of a
    traceback from inside the flow. Returns at once without one (PREFECT_API_URL set) or once it answered."""
    global _api
    import httpx
    from prefect.logging import get_logger
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    from imagegen.errors import SettingsError

    api = _api
    if api is None or api.ready or api.port is None:
        return
    get_logger().info(f"Starting temporary server on http://127.0.0.1:{api.port}\nSee "
                      "https://www.prefect.io/docs/v3/concepts/server#how-to-guides for more information on "
                      "running a dedicated Prefect server.")
    timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), STARTUP_TIMEOUT_SECONDS)
    deadline, tried, reason = time.monotonic() + timeout, {api.port}, "did not answer"
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            code = api.process.poll()
            if code == PORT_TAKEN and len(tried) < 10:  # another process took the port after we chose it
                api = _api = TemporaryApi()
                api.serve(_environment, tried)
                _point_prefect_at(api)
                continue
            if code is not None:
                reason = f"failed to start (exit code {code})"
                break
            try:
                if client.get(f"{api.url}/health", timeout=5).status_code == 200:
                    api.ready = True
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    stop_temporary_api()
    raise SettingsError([("PREFECT_API_URL", f"unset, and the temporary Prefect API {reason} within {timeout} s; "
                                             "start `prefect server start` and set PREFECT_API_URL to it")])


def stop_temporary_api() -> None:
    """Stop the temporary API this process started, if it did, and any Prefect may have started here."""
    global _api
    api, _api = _api, None
    if api is not None:
        api.stop()
    if (server := sys.modules.get("prefect.server.api.server")) is not None:
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()
