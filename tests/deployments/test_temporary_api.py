"""The temporary API `imagegen run` starts before it knows it needs one (deployments/temporary_api.py):

- prepared and then not needed (an API named by the profile), its process ends without touching PREFECT_HOME;
- prepared and told to serve, it answers on the URL this process's Prefect settings now name, leads its own
  session (a terminal's Ctrl-C does not reach it), records flow runs, gets no UI link, registers no block types in a fresh
  database and leaves no memo saying it did (so a `prefect server start` on that home still registers them),
  and is gone after `stop_temporary_api()`.

Each case runs in a subprocess of its own, so its Prefect settings (and PREFECT_API_URL) stay there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO


def run_script(script: str, home: Path, **env: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PYTEST_CURRENT_TEST")}
    environment.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **env)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_prepared_api_ends_untouched_when_the_profile_names_an_api(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('active = "remote"\n\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n')
    result = run_script("""
        import json, os
        from imagegen_flows.deployments import temporary_api as api
        api.prepare_temporary_api()
        pid = api._api.process.pid
        api.launch_temporary_api()
        print(json.dumps({"pid": pid, "kept": api._api is not None, "url": os.environ.get("PREFECT_API_URL")}))
    """, home, PREFECT_PROFILES_PATH=str(profiles))
    assert not result["kept"] and result["url"] is None
    assert not alive(result["pid"]), "the prepared server process was left running"
    assert not (home / "prefect.db").exists(), "a server that was not needed touched PREFECT_HOME's database"


def test_a_launched_api_serves_records_and_stops(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_script("""
        import json, os
        import httpx
        from prefect import flow
        from imagegen_flows.deployments import temporary_api as api

        api.prepare_temporary_api()
        api.launch_temporary_api()
        api.await_temporary_api()
        process = api._api.process

        @flow
        def hello() -> int:
            return 7

        hello()
        url = os.environ["PREFECT_API_URL"]
        runs = httpx.post(f"{url}/flow_runs/filter", json={}).json()
        block_types = httpx.post(f"{url}/block_types/filter", json={}).json()
        own_session = os.getsid(process.pid) == process.pid
        from prefect.utilities.urls import url_for
        ui_link = url_for("flow-run", obj_id=runs[0]["id"])
        api.stop_temporary_api()
        print(json.dumps({"url": url, "pid": process.pid, "runs": [r["state_type"] for r in runs],
                          "block_types": len(block_types), "own_session": own_session,
                          "ui_link": ui_link}))
    """, home)
    assert result["url"].startswith("http://127.0.0.1:") and result["url"].endswith("/api")
    assert result["runs"] == ["COMPLETED"], "the temporary API recorded the flow run"
    assert result["own_session"], "the temporary API must lead its own session (out of the terminal's Ctrl-C)"
    assert result["ui_link"] is None, "a run on the temporary API (it serves no UI) must not print a UI link"
    assert result["block_types"] == 0, "a temporary API registers no block types in a fresh database"
    memo = home / "memo_store.toml"
    assert not memo.exists() or "block_auto_registration" not in memo.read_text(), \
        "the skipped registration was memoized: `prefect server start` on this home would skip it too"
    assert not alive(result["pid"]), "stop_temporary_api() left the server running"


def test_the_temporary_api_sends_no_telemetry_unless_the_user_turns_it_on(monkeypatch):
    from imagegen_flows.deployments.temporary_api import server_environment

    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    assert server_environment()["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    assert server_environment()["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
