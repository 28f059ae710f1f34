"""The temporary Prefect API of `imagegen run` without PREFECT_API_URL, kept out of the terminal's Ctrl-C.

Prefect starts it lazily as a uvicorn subprocess in our process group, so a terminal's Ctrl-C (sent to the
whole group) killed the API first, and the interrupted run then retried its API calls for minutes. Started
in a session of its own it ends only when we end it: at a normal exit (Prefect's own atexit hook), or from
`stop_temporary_api()` when an interrupt ends the run.
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace
from typing import Any


def _popen_in_own_session(*args: Any, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(*args, start_new_session=True, **kwargs)


def detach_temporary_api() -> None:
    """Make the temporary API Prefect may start in this process lead its own session (no group signals)."""
    from prefect.server.api import server

    if not isinstance(server.subprocess, SimpleNamespace):
        # Only that module's view of `subprocess` changes; everything else it uses stays the real module's.
        view = {name: getattr(subprocess, name) for name in dir(subprocess) if not name.startswith("__")}
        # a module-shaped namespace stands in for the module on purpose, in this one module only
        server.subprocess = SimpleNamespace(**{**view, "Popen": _popen_in_own_session})  # type: ignore[assignment]


# A fresh PREFECT_HOME migrates its database first: 15-40 s on a busy 2-core machine, over Prefect's 20 s.
STARTUP_TIMEOUT_SECONDS = 120


def start_temporary_api() -> None:
    """Start the temporary API now (when PREFECT_API_URL is unset), so a slow start is one clear error here
    instead of a traceback from inside the flow. Prefect's own lazy start then finds it running."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    from imagegen.errors import SettingsError

    if PREFECT_API_URL.value():
        return
    timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), STARTUP_TIMEOUT_SECONDS)
    try:
        SubprocessASGIServer().start(timeout=timeout)
    except (RuntimeError, OSError) as err:
        stop_temporary_api()
        reason = "did not answer" if "Timed out" in str(err) else f"failed to start ({type(err).__name__})"
        raise SettingsError([("PREFECT_API_URL", f"unset, and the temporary Prefect API {reason} within "
                                                 f"{timeout} s; start `prefect server start` and set "
                                                 "PREFECT_API_URL to it")]) from None


def stop_temporary_api() -> None:
    """Stop the temporary API this process started, if it did (SIGTERM, then SIGKILL after 5 s)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
