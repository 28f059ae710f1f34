"""The temporary Prefect API's process: Prefect's server imported ahead, served once the CLI says so.

Started by `imagegen run` before it knows whether it needs a temporary API (that takes Prefect's settings:
the environment, the profile, a .env file; importing them is a second of the CLI's start). Meanwhile this
process imports Prefect's server (about 3 s), which reads no database and no setting that matters yet. Then
it reads one line on stdin: a JSON object with the port and the Prefect settings the CLI resolved (what
Prefect hands its own temporary server) to serve `python -m uvicorn` exactly as Prefect's
`SubprocessASGIServer` does (a fresh SQLite database migrated first, in half the time:
prefect_database.py); end of input (the CLI found a configured API, or ended) ends it untouched.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

from imagegen_flows.deployments.prefect_database import migrate_fresh_database


def uvicorn_arguments(port: int, app_dir: str) -> list[str]:
    """Prefect's own command line for its temporary server (prefect.server.api.server.SubprocessASGIServer)."""
    return ["--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def main() -> None:
    import prefect.server.api.server  # noqa: F401 - the slow part, while the CLI decides

    line = sys.stdin.readline()
    if not line.strip():
        return
    order = json.loads(line)
    os.environ.update(order["environment"])
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
    migrate_fresh_database()
    sys.argv = ["uvicorn", *uvicorn_arguments(order["port"], order["app_dir"])]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
