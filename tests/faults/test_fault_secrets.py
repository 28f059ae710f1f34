"""Sentinel secrets never leave their blocks: not in logs (caplog, stderr, the Prefect API's logs), not
in artifacts, flow or task runs, events, persisted results, catalog rows, output files or exception
texts, even when servers echo them back in error bodies like careless gateways do.

One test drives four runs that exercise every path a credential takes: an NVIDIA key the server
rejects and echoes (401), a neuroflash client secret the token endpoint rejects and echoes, Supabase
and GitLab stores whose gateways echo the key/token in their refusals, and a clean run after.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.responses import JSONResponse

from imagegen_flows.deployments.cli import main as cli_main
from tests.emulators.gitlab import PROJECT_ID, GitLabEmulator
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.serve import serve_asgi
from tests.emulators.supabase import SupabaseEmulator
from tests.faults.conftest import NVIDIA_KEY, catalog_rows, write_brief
from tests.prefect_records import api_records, around, files_text

pytestmark = pytest.mark.prefect

NF_ID, NF_SECRET = "nf-faults-client", "nf-SENTINEL-faults-secret"
SUPABASE_KEY = "sb-SENTINEL-faults-key"
GITLAB_TOKEN = "glpat-SENTINEL-faults-token"
SECRETS = (NVIDIA_KEY, NF_SECRET, SUPABASE_KEY, GITLAB_TOKEN)


class EchoingGateway:
    """In front of an emulator: while `echo` is on, refuse every request with 401 and echo its
    credentials in the body, as a misconfigured gateway would."""

    def __init__(self, app):
        self.app, self.echo, self.refused = app, False, 0

    async def __call__(self, scope, receive, send):
        if self.echo and scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            presented = {k: headers.get(k) for k in ("apikey", "authorization", "private-token")}
            self.refused += 1
            response = JSONResponse({"message": f"credentials rejected: {presented}", "error": "unauthorized",
                                     "statusCode": "401"}, status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


@pytest.fixture
def services(nvidia, monkeypatch):
    neuroflash = NeuroflashEmulator(client_id=NF_ID, client_secret="the-right-secret", image_long_side=1024)
    supabase = EchoingGateway(SupabaseEmulator(key=SUPABASE_KEY).app)
    gitlab = EchoingGateway(GitLabEmulator(token=GITLAB_TOKEN).app)
    with serve_asgi(neuroflash.app) as nf_url, serve_asgi(supabase) as sb_url, serve_asgi(gitlab) as gl_url:
        neuroflash.base_url = nf_url
        for name, value in {"NEUROFLASH_CLIENT_ID": NF_ID, "NEUROFLASH_CLIENT_SECRET": NF_SECRET,
                            "IMAGEGEN_NEUROFLASH_API_URL": f"{nf_url}/api",
                            "IMAGEGEN_NEUROFLASH_TOKEN_URL": f"{nf_url}/oauth/v2/token",
                            "SUPABASE_URL": sb_url, "SUPABASE_KEY": SUPABASE_KEY, "GITLAB_URL": gl_url,
                            "GITLAB_TOKEN": GITLAB_TOKEN, "IMAGEGEN_GITLAB_PROJECT": str(PROJECT_ID)}.items():
            monkeypatch.setenv(name, value)
        yield nvidia, neuroflash, supabase, gitlab


def test_sentinel_secrets_never_leave_their_blocks(prefect_harness, services, fast_retries, tmp_path, capsys,
                                                   caplog):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    nvidia, neuroflash, supabase, gitlab = services
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="prefect")
    for name in ("imagegen", "httpx", "supabase", "storage3", "postgrest", "gitlab", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []

    def run(brief: Path, out: Path) -> int:
        try:
            code = cli_main(["run", str(brief), "--out", str(out), "--json"])
        except Exception as exc:  # noqa: BLE001 - an escaping exception's text is checked too
            code = 99
            texts.append(f"{type(exc).__name__}: {exc}\n{exc!r}")
        captured = capsys.readouterr()
        texts.extend([captured.out, captured.err])
        return code

    # 1. NVIDIA refuses the key and echoes it ("Bearer nvapi-..."): masters fail with the reason
    nvidia.faults.expired_key = True
    out_nvidia = tmp_path / "out-nvidia"
    assert run(write_brief(tmp_path, "secrets-nvidia", provider={"name": "nvidia"}), out_nvidia) == 1, texts[-3:]
    assert "ProviderAuthError" in json.dumps(json.loads(texts[-2])["failed"])
    nvidia.faults.expired_key = False

    # 2. neuroflash's token endpoint refuses the client secret and echoes it: the run stops before any
    #    generation (the CLI's pre-flight check already needs a token) with exit 1: the brief is fine
    out_nf = tmp_path / "out-neuroflash"
    assert run(write_brief(tmp_path, "secrets-neuroflash", provider={"name": "neuroflash"}), out_nf) == 1, texts[-3:]
    assert "nf-SENTINEL" not in texts[-1] and "NEUROFLASH_CLIENT_SECRET" in texts[-1], texts[-1][-800:]

    # 3. each store's gateway in turn refuses and echoes the key / token: publishing fails, nothing is kept
    stores_brief = write_brief(tmp_path, "secrets-stores", provider={"name": "nvidia"},
                               publish={"small_store": "supabase", "large_store": "gitlab",
                                        "size_threshold_bytes": 20_000})
    out_stores = tmp_path / "out-stores"
    for gateway, store in ((supabase, "supabase"), (gitlab, "gitlab")):
        gateway.echo = True
        assert run(stores_brief, out_stores) == 1, (store, texts[-3:])
        # a master whose files all route to the other store publishes (failures are per master);
        # nothing is cataloged in the store that refused
        assert gateway.refused and not [r for r in catalog_rows(out_stores) if r["store"] == store]
        gateway.echo = False

    # 4. the same brief once the gateways behave: everything published and catalogued
    assert run(stores_brief, out_stores) == 0, texts[-3:]
    rows = catalog_rows(out_stores)
    assert {r["store"] for r in rows} == {"supabase", "gitlab"}

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)  # text has the tracebacks
    records = {
        "stdout/stderr/exceptions": "\n".join(texts),
        "log records": logged,
        "Prefect API (logs, artifacts, flow runs, task runs, events)": api_records(events_since=started),
        "catalog rows": json.dumps(rows) + json.dumps(catalog_rows(out_nvidia)),
    }
    files = files_text(out_nvidia, out_nf, out_stores, Path(PREFECT_LOCAL_STORAGE_PATH.value()))
    # each leak with the text around it, so a failure on CI says where the secret went
    leaks = [f"{secret} in {where}: ...{around(text, secret)}..."
             for where, text in records.items() for secret in SECRETS if secret in text]
    leaks += [f"{secret} in an output or result file: ...{around(files.decode('latin-1'), secret)}..."
              for secret in SECRETS if secret.encode() in files]
    assert leaks == []
    # the echoes really happened: otherwise this test proves nothing
    assert nvidia.statuses[401] >= 2 and neuroflash.calls and supabase.refused and gitlab.refused


def test_the_session_scan_finds_a_sentinel_and_forgets_it_once_deleted(prefect_harness):
    """The check every session ends with (tests/conftest.py) is not blind: an artifact carrying a
    sentinel fails it, naming where; deleted again, the session's own check is clean of it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    from tests.conftest import assert_no_sentinel_left

    with get_client(sync_client=True) as client:
        probe = client.create_artifact(ArtifactCreate(key="sentinel-scan-probe", type="markdown",
                                                      data="token: glpat-SENTINEL-scan-probe"))
    try:
        with pytest.raises(AssertionError, match=r"Prefect API[\s\S]*glpat-SENTINEL-scan-probe"):
            assert_no_sentinel_left()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_artifact(probe.id)
    assert_no_sentinel_left()
