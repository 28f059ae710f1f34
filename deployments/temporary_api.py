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
        server.subprocess = SimpleNamespace(**{**view, "Popen": _popen_in_own_session})


def stop_temporary_api() -> None:
    """Stop the temporary API this process started, if it did (SIGTERM, then SIGKILL after 5 s)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
