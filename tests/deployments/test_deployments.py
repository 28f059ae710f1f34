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
    assert action.parameters["brief"] == "{{ event.payload.brief | default('') }}"


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
    assert created.parameters == {**expected, "confined": True}
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_completed(), f"{run.state}\n{prefect_server.diagnostics()}"
    rows = assert_published(folder / "out")
    assert {r["campaign"] for r in rows} == {"event-test"}


def send_event(server, payload: dict) -> None:
    event = {"id": str(uuid.uuid4()), "occurred": datetime.now(timezone.utc).isoformat(),
             "event": "imagegen.brief.submitted", "resource": {"prefect.resource.id": "imagegen.brief.webhook"},
             "payload": payload}
    response = httpx.post(f"{server.url}/events", json=[event], timeout=10)
    assert response.status_code == 204, response.text


def rejected_events(server, since: datetime) -> list[dict]:
    response = httpx.post(f"{server.url}/events/filter", timeout=10, json={
        "filter": {"occurred": {"since": since.isoformat()}, "event": {"name": ["imagegen.brief.rejected"]}},
        "limit": 50})
    assert response.status_code == 200, response.text
    return response.json()["events"]


def test_event_without_out_dir_still_starts_a_run(prefect_server, worker):
    """A webhook may send just the brief (here a mapping, which must stay a mapping): out_dir falls back
    to imagegen-output. The brief is invalid on purpose, so the run fails before it writes anything."""
    marker = f"no-out-dir-{uuid.uuid4().hex[:8]}"
    send_event(prefect_server, {"brief": {"campaign": marker}})

    def started():
        return [r for r in runs_of(prefect_server, f"{CAMPAIGN_FLOW}/on-brief-submitted")
                if r.parameters.get("brief") == {"campaign": marker}]

    (created,) = prefect_server.wait(started, 60, "the flow run of an event without out_dir")
    assert created.parameters == {"brief": {"campaign": marker}, "out_dir": "imagegen-output", "confined": True}
    run = prefect_server.wait_for_final(created.id, timeout=120)
    assert run.state.is_failed()  # the brief has no subjects


def test_refused_event_payloads_fail_visibly_and_emit_rejected(prefect_server, worker, tmp_path, write_brief):
    """No brief, and a folder outside IMAGEGEN_OUTPUT_ROOT: each starts a run that fails with the reason
    (what the UI shows) and emits imagegen.brief.rejected; nothing is written outside the root."""
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    brief = write_brief(tmp_path / "ok", campaign="refused-test")
    outside = Path("/var/tmp") / f"imagegen-event-{uuid.uuid4().hex[:8]}"
    cases = {"no brief": ({"out_dir": str(tmp_path / "out")}, "event.payload.brief: missing"),
             "outside root": ({"brief": str(brief), "out_dir": str(outside)},
                              f"event.payload.out_dir: '{outside}' is outside IMAGEGEN_OUTPUT_ROOT")}
    for payload, _reason in cases.values():
        send_event(prefect_server, payload)

    def both_final():
        runs = {name: [r for r in runs_of(prefect_server, f"{CAMPAIGN_FLOW}/on-brief-submitted")
                       if r.created > since and r.parameters.get("out_dir") == payload.get("out_dir")
                       and r.parameters.get("brief") == payload.get("brief", "")]
                for name, (payload, _reason) in cases.items()}
        if not all(len(found) == 1 and found[0].state and found[0].state.is_final() for found in runs.values()):
            return None
        return {name: found[0] for name, found in runs.items()}

    finished = prefect_server.wait(both_final, 180, "the refused event runs to fail")
    for name, (_payload, reason) in cases.items():
        run = finished[name]
        assert run.state.is_failed() and reason in (run.state.message or ""), (name, run.state)
    assert not outside.exists()

    def rejections_arrived():  # events are sent in the background and stored a moment later
        reasons = [e["payload"]["reason"] for e in rejected_events(prefect_server, since)]
        return reasons if all(any(reason in r for r in reasons) for _payload, reason in cases.values()) else None

    prefect_server.wait(rejections_arrived, 30, "an imagegen.brief.rejected event per refused payload")


def readme_n8n_request() -> tuple[str, dict[str, str], str]:
    """The README's n8n HTTP Request node as written: the URL, the header, the JSON body. The first two
    lines carry a Prefect Cloud variant in brackets, for a reader, not for the request."""
    text = (REPO / "README.md").read_text()
    block = text.split("for n8n", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    request_line, header_line, *body = block.splitlines()
    method, url = request_line.split("(")[0].split()
    assert method == "POST"
    name, value = header_line.split("(")[0].split(":", 1)
    return url, {name.strip(): value.strip()}, "\n".join(body)


def test_the_readme_n8n_recipe_starts_a_run(prefect_server, worker, tmp_path, write_brief):
    """The n8n node's URL, headers and body exactly as the README gives them; only the placeholders are
    filled in as n8n would ({{$uuid}}, {{$now}}), and the example brief and folder swapped for real ones."""
    url, headers, body = readme_n8n_request()
    brief = write_brief(tmp_path / "n8n", campaign="n8n-test")
    body = (body.replace("{{$uuid}}", str(uuid.uuid4())).replace("{{$now}}", datetime.now(timezone.utc).isoformat())
            .replace("https://cms.example.com/briefs/spring.yaml", str(brief))
            .replace("/srv/imagegen/output", str(tmp_path / "n8n" / "out")))
    response = httpx.post(url.replace("{PREFECT_API_URL}", prefect_server.url), content=body,
                          headers=headers, timeout=10)
    assert response.status_code == 204, f"{response.status_code} {response.text}"

    def started():
        return [r for r in runs_of(prefect_server, f"{CAMPAIGN_FLOW}/on-brief-submitted")
                if r.parameters.get("brief") == str(brief)]

    (created,) = prefect_server.wait(started, 60, "the flow run the n8n request triggers")
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_completed(), f"{run.state}\n{prefect_server.diagnostics()}"
    assert {r["campaign"] for r in assert_published(tmp_path / "n8n" / "out")} == {"n8n-test"}

# ----------------------------------------------------------------------------------------- serve

def test_serve_after_deploy_refuses_saying_what_to_do(prefect_server, deployed):
    """Serving deployments that `prefect deploy` registered for the worker would strip their code
    location and crash every run: serve refuses, names them, says how to proceed, and changes nothing."""
    with prefect_server.client() as client:
        before = {name: client.read_deployment_by_name(name).updated for name in DEPLOYMENTS}
    refused = prefect_server.run(str(BIN / "imagegen"), "serve", timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in refused.stderr
    assert all(name in line and f"prefect deployment delete {name}" in line for name in DEPLOYMENTS), line
    with prefect_server.client() as client:
        after = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
    assert {name: d.updated for name, d in after.items()} == before
    assert all(d.work_pool_name == POOL for d in after.values())


def test_serve_registers_the_deployments(prefect_server, deployed, tmp_path):
    """After the refusal, the operator removes the worker's deployments as told: serve takes the names."""
    for name in DEPLOYMENTS:
        removed = prefect_server.run(str(BIN / "prefect"), "deployment", "delete", name)
        assert removed.returncode == 0, removed.stdout + removed.stderr
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


def test_deploy_after_serve_gives_the_worker_its_deployments_back(prefect_server, worker, tmp_path, write_brief):
    """`prefect deploy --all` after serve stopped: the deployments are the worker's again (pool, code
    location, not paused by serve's exit) and an ad-hoc run completes on the worker."""
    deployed_again = prefect_server.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all", timeout=180)
    assert deployed_again.returncode == 0, deployed_again.stdout + deployed_again.stderr
    with prefect_server.client() as client:
        found = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
    assert all(d.work_pool_name == POOL and d.pull_steps and not d.paused for d in found.values()), {
        name: (d.work_pool_name, d.pull_steps, d.paused) for name, d in found.items()}
    brief, out = write_brief(tmp_path / "brief", campaign="after-serve"), tmp_path / "out"
    with prefect_server.client() as client:
        created = client.create_flow_run_from_deployment(found[f"{CAMPAIGN_FLOW}/adhoc"].id,
                                                         parameters={"brief": str(brief), "out_dir": str(out)})
    run = prefect_server.wait_for_final(created.id)
    assert run.state.is_completed(), f"{run.state}\n{prefect_server.diagnostics()}"
    assert {r["campaign"] for r in assert_published(out)} == {"after-serve"}


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
