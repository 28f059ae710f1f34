"""prefect.yaml against a real `prefect server start` and a real process worker.

`prefect deploy --all` registers the four deployments; an ad-hoc run and an event-triggered run are
executed by the worker; the schedules create upcoming runs; `imagegen serve` registers the same
deployments from one process. The serve tests come last: serving re-registers the deployments that
`prefect deploy` made (same names), without the worker's pull step.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import yaml

from tests.deployments.conftest import WATCH

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "imagegen-process"
CAMPAIGN_FLOW, SIZE_SET_FLOW = "imagegen-campaign", "imagegen-size-set"
DEPLOYMENTS = {f"{CAMPAIGN_FLOW}/adhoc", f"{SIZE_SET_FLOW}/social-weekly", f"{SIZE_SET_FLOW}/social-monthly-full",
               f"{CAMPAIGN_FLOW}/on-brief-submitted"}
BERLIN = ZoneInfo("Europe/Berlin")
# Prefect 3.8's scheduler could not insert runs with SQLAlchemy 2.1 ("Can't evaluate bulk DML statement"
# in models.deployments._insert_scheduled_flow_runs), so scheduled deployments never got runs; 3.9 inserts
# them. test_schedules_create_upcoming_runs is what shows that pyproject needs no SQLAlchemy pin.


def catalog_rows(out: Path) -> list[dict]:
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets ORDER BY asset_id, variant")]


def runs_of(server, deployment: str, **filters):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

    with server.client() as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(**filters) if filters else None, limit=200)


def assert_published(out: Path) -> list[dict]:
    rows = catalog_rows(out)
    assert {r["variant"] for r in rows} == {"master", "square_webp"}
    assert {r["status"] for r in rows} == {"published"}
    assert (out / "gallery.html").is_file()
    assert (out / "gallery.html").read_text().count("<figure") == len(rows)
    return rows


# ----------------------------------------------------------------------------------- prefect deploy

def test_deploy_all_registers_four_deployments(prefect_server, deployed):
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} == {name.split("/")[1] for name in DEPLOYMENTS}
    with prefect_server.client() as client:
        found = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
        assert client.read_work_pool(POOL).type == "process"
        automations = client.read_automations()
    for name, deployment in found.items():
        assert deployment.work_pool_name == POOL, name
        # `{{ $PWD }}` was filled in with the checkout the deploy ran from
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}], name
        assert not deployment.paused, name
    crons = {name: [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules]
             for name, d in found.items()}
    assert crons == {
        f"{CAMPAIGN_FLOW}/adhoc": [],
        f"{SIZE_SET_FLOW}/social-weekly": [("0 8 * * 1", "Europe/Berlin", True)],
        f"{SIZE_SET_FLOW}/social-monthly-full": [("0 6 1 * *", "Europe/Berlin", True)],
        f"{CAMPAIGN_FLOW}/on-brief-submitted": [],
    }
    assert found[f"{SIZE_SET_FLOW}/social-weekly"].parameters["size_sets"] == ["social_weekly"]

    on_brief = found[f"{CAMPAIGN_FLOW}/on-brief-submitted"]
    triggered = [a for a in automations if any(getattr(x, "deployment_id", None) == on_brief.id for x in a.actions)]
    assert len(triggered) == 1 and triggered[0].enabled
    trigger = triggered[0].trigger
    assert trigger.expect == {"imagegen.brief.submitted"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "imagegen.brief.*"}
    (action,) = triggered[0].actions
    assert action.type == "run-deployment"
    # the templates reach the server as written (`prefect deploy` fills in `{{ $PWD }}`, not these)
    (on_brief_spec,) = [d for d in spec["deployments"] if d["name"] == "on-brief-submitted"]
    assert action.parameters == on_brief_spec["triggers"][0]["parameters"]
    assert action.parameters["brief"] == "{{ event.payload.brief }}"


def test_schedules_create_upcoming_runs(prefect_server, deployed):
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    scheduled = {"state": FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))}

    def upcoming(name: str):
        def check():
            log = prefect_server.log.read_text(errors="replace")
            if "schedule_deployments" in log and "Traceback" in log:
                raise AssertionError(f"the server's scheduler failed:\n{log[log.index('Traceback'):][:2500]}")
            return runs_of(prefect_server, name, **scheduled)
        return check

    now = datetime.now(timezone.utc)
    weekly = prefect_server.wait(upcoming(f"{SIZE_SET_FLOW}/social-weekly"), 60, "social-weekly's scheduled runs")
    monthly = prefect_server.wait(upcoming(f"{SIZE_SET_FLOW}/social-monthly-full"), 30,
                                  "social-monthly-full's scheduled runs")
    for run in weekly:
        local = run.expected_start_time.astimezone(BERLIN)
        assert (local.isoweekday(), local.hour, local.minute) == (1, 8, 0), local
        assert run.expected_start_time > now
        assert run.parameters["size_sets"] == ["social_weekly"]
    for run in monthly:
        local = run.expected_start_time.astimezone(BERLIN)
        assert (local.day, local.hour, local.minute) == (1, 6, 0), local
    # the next one is the next Monday 08:00 in Berlin, whatever the UTC offset that day
    first = min(r.expected_start_time for r in weekly)
    assert first - now <= timedelta(days=7)


# ------------------------------------------------------------------------------ runs on the worker

def test_adhoc_deployment_run_completes(prefect_server, worker, tmp_path, write_brief):
    brief, out = write_brief(tmp_path / "brief"), tmp_path / "out"
    with prefect_server.client() as client:
        deployment = client.read_deployment_by_name(f"{CAMPAIGN_FLOW}/adhoc")
        created = client.create_flow_run_from_deployment(
            deployment.id, parameters={"brief": str(brief), "out_dir": str(out)})
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_completed(), f"{run.state}\n{prefect_server.diagnostics()}"
    assert run.parameters == {"brief": str(brief), "out_dir": str(out)}
    rows = assert_published(out)
    assert len(rows) == 2 and {r["campaign"] for r in rows} == {"deploy-test"}


def flow_run_processes(flow_run_id) -> list[int]:
    """Processes on this machine running the given flow run (the worker passes its id in the environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_cancel_from_the_ui_ends_the_flow_run_process_and_a_rerun_finishes(prefect_server, worker, tmp_path,
                                                                           write_brief):
    """"Cancel" in the UI (state Cancelling): the worker signals the flow-run process, which ends promptly
    (flows/interrupts.py) instead of waiting for its task threads; a new run of the brief completes the set."""
    from prefect.states import Cancelling

    subjects = [{**WATCH, "variations": 4}, {**WATCH, "subject": "a leather wallet on a marble plinth",
                                             "variations": 4}]
    brief, out = write_brief(tmp_path / "brief", campaign="cancel-test", subjects=subjects), tmp_path / "out"
    with prefect_server.client() as client:
        deployment = client.read_deployment_by_name(f"{CAMPAIGN_FLOW}/adhoc")
        created = client.create_flow_run_from_deployment(
            deployment.id, parameters={"brief": str(brief), "out_dir": str(out)})

    def generating():
        return (out / "masters").is_dir() and any((out / "masters").glob("*.png"))

    prefect_server.wait(generating, 240, "the first master of the run to be cancelled")
    with prefect_server.client() as client:
        client.set_flow_run_state(created.id, Cancelling(), force=True)
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_cancelled(), f"{run.state}\n{prefect_server.diagnostics()}"
    prefect_server.wait(lambda: not flow_run_processes(created.id), 30, "the cancelled flow run's process to end")

    with prefect_server.client() as client:
        again = client.create_flow_run_from_deployment(
            deployment.id, parameters={"brief": str(brief), "out_dir": str(out)})
    rerun = prefect_server.wait_for_final(again.id)
    assert rerun.state.is_completed(), f"{rerun.state}\n{prefect_server.diagnostics()}"
    rows = catalog_rows(out)
    assert len({r["asset_id"] for r in rows}) == 8 and {r["status"] for r in rows} == {"published"}


def test_emitted_event_starts_a_run_with_the_payload_parameters(prefect_server, worker, tmp_path, write_brief):
    folder = tmp_path / "emitter"
    brief = write_brief(folder, campaign="event-test")
    sent = prefect_server.run(str(BIN / "imagegen"), "emit", "brief.yaml", "--out", "out", "--campaign",
                              "event-test", cwd=folder)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.startswith("sent imagegen.brief.submitted (")
    # relative paths are made absolute for the worker, which runs in the checkout
    expected = {"brief": str(brief.resolve()), "out_dir": str((folder / "out").resolve())}

    def started():
        return [r for r in runs_of(prefect_server, f"{CAMPAIGN_FLOW}/on-brief-submitted")
                if r.parameters.get("brief") == expected["brief"]]

    (created,) = prefect_server.wait(started, 60, "the event-triggered flow run")
    assert created.parameters == expected
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_completed(), f"{run.state}\n{prefect_server.diagnostics()}"
    rows = assert_published(folder / "out")
    assert {r["campaign"] for r in rows} == {"event-test"}


def test_event_without_out_dir_still_starts_a_run(prefect_server, worker):
    """A webhook may send just the brief (here a mapping, which must stay a mapping): out_dir falls back
    to imagegen-output. The brief is invalid on purpose, so the run fails before it writes anything."""
    marker = f"no-out-dir-{uuid.uuid4().hex[:8]}"
    event = {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(),
             "event": "imagegen.brief.submitted",
             "resource": {"prefect.resource.id": "imagegen.brief.webhook"},
             "payload": {"brief": {"campaign": marker}}}
    response = httpx.post(f"{prefect_server.url}/events", json=[event], timeout=10)
    assert response.status_code == 204, response.text

    def started():
        return [r for r in runs_of(prefect_server, f"{CAMPAIGN_FLOW}/on-brief-submitted")
                if r.parameters.get("brief") == {"campaign": marker}]

    (created,) = prefect_server.wait(started, 60, "the flow run of an event without out_dir")
    assert created.parameters == {"brief": {"campaign": marker}, "out_dir": "imagegen-output"}
    run = prefect_server.wait_for_final(created.id, timeout=120)
    assert run.state.is_failed()  # the brief has no subjects


# ----------------------------------------------------------------------------------------- serve

def test_serve_registers_the_deployments(prefect_server, deployed, tmp_path):
    """Runs after the worker tests: serving takes over the deployments of the same names."""
    started = datetime.now(timezone.utc)
    output = tmp_path / "serve.log"
    process = prefect_server.spawn([str(BIN / "imagegen"), "serve"], output, cwd=REPO, env=prefect_server.env())
    try:
        def registered():
            if process.poll() is not None:
                raise AssertionError(f"imagegen serve exited with {process.returncode}\n{output.read_text()}")
            if "being served" not in output.read_text():
                return None
            with prefect_server.client() as client:
                found = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
            return found if all(d.updated > started for d in found.values()) else None

        found = prefect_server.wait(registered, 90, "imagegen serve to register the deployments")
        with prefect_server.client() as client:
            automations = client.read_automations()
        assert process.poll() is None
    finally:
        prefect_server.stop(process)
    text = output.read_text()
    assert "PREFECT_API_URL is not set" not in text
    assert all(name in text for name in DEPLOYMENTS), text
    schedules = {name: [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] for name, d in found.items()}
    assert schedules[f"{SIZE_SET_FLOW}/social-weekly"] == [("0 8 * * 1", "Europe/Berlin")]
    assert schedules[f"{SIZE_SET_FLOW}/social-monthly-full"] == [("0 6 1 * *", "Europe/Berlin")]
    assert schedules[f"{CAMPAIGN_FLOW}/adhoc"] == []
    assert found[f"{CAMPAIGN_FLOW}/adhoc"].entrypoint == "flows/campaign.py:campaign_flow"
    assert found[f"{SIZE_SET_FLOW}/social-weekly"].parameters["size_sets"] == ["social_weekly"]
    on_brief = found[f"{CAMPAIGN_FLOW}/on-brief-submitted"]
    triggered = [a for a in automations if any(getattr(x, "deployment_id", None) == on_brief.id for x in a.actions)]
    assert len(triggered) == 1
    assert triggered[0].trigger.expect == {"imagegen.brief.submitted"}
    (spec,) = [d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
               if d["name"] == "on-brief-submitted"]
    assert triggered[0].actions[0].parameters == spec["triggers"][0]["parameters"]


def test_serve_without_api_url_notes_the_temporary_api(prefect_server, tmp_path):
    env = prefect_server.env()
    env.pop("PREFECT_API_URL")
    env["PREFECT_HOME"] = str(tmp_path / "home")
    output = tmp_path / "serve.log"
    process = prefect_server.spawn([str(BIN / "imagegen"), "serve"], output, cwd=tmp_path, env=env)
    try:
        note = prefect_server.wait(lambda: "PREFECT_API_URL is not set" in output.read_text(), 60,
                                   "the note about the temporary API", interval=0.2)
    finally:
        prefect_server.stop(process)
    assert note
    assert "temporary API" in output.read_text() and "prefect server start" in output.read_text()


def test_api_is_ephemeral_follows_prefect_api_url(prefect_server):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from imagegen_flows.deployments.serve import api_is_ephemeral

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert api_is_ephemeral()
    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        assert not api_is_ephemeral()
