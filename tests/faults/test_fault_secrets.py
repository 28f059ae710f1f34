"""Sentinel secrets never leave their blocks: not in logs (caplog, stderr, the Prefect API's logs), not
in artifacts, flow or task runs, events, persisted results, catalog rows, output files or exception
texts, even when servers echo them back in error bodies like careless gateways do.

One test drives four runs that exercise every path a credential takes: an NVIDIA key the server
rejects and echoes (401), a neuroflash client secret the token endpoint rejects and echoes, Supabase
and GitLab stores whose gateways echo the key/token in their refusals, and a clean run after.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- URL settings

# Every URL setting may carry credentials: user info (`user:password@`) and a secret query parameter.
# Each test below puts sentinels in both, in one variable, and runs `imagegen run` against the
# emulators (or a closed port where the service is not needed) until it fails, or succeeds.
URL_USER = "user"


def url_sentinels(variable: str) -> tuple[str, str]:
    """(password, token) sentinels of one variable: both carry the session-wide SENTINEL mark."""
    tag = variable.lower().replace("_", "-")
    return f"SENTINEL-{tag}-password", f"SENTINEL-{tag}-token"


def sentinel_url(base: str, variable: str, path: str = "", *, query: bool = True) -> str:
    """`base` (scheme://host:port) + `path`, with the variable's sentinels as password and ?token=."""
    password, token = url_sentinels(variable)
    scheme, host = base.split("://", 1)
    return f"{scheme}://{URL_USER}:{password}@{host}{path}" + (f"?token={token}" if query else "")


def closed_port_url(scheme: str) -> str:
    """A loopback URL nothing listens on: a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}"


def url_leak_needles(variable: str) -> list[str]:
    """What must never show: the sentinels, and the Basic auth credentials a client makes of the user info."""
    password, token = url_sentinels(variable)
    basic = base64.b64encode(f"{URL_USER}:{password}".encode()).decode()
    return [password, token, basic]


@dataclass
class UrlCase:
    """One run with sentinels in one URL variable: how it is set up, the exit code it ends with, and
    where the URL shows, masked (which proves it was used: a URL nobody calls proves nothing)."""

    variable: str
    configure: Callable[[UrlServices], dict[str, Any]]  # sets the environment, returns write_brief arguments
    exit_code: int
    shown_in: tuple[str, ...]  # the records of this run that hold `user:***@`
    called: Callable[[UrlServices], bool] = lambda services: True  # where nothing shows the URL
    user_info_only: bool = False  # no ?token=: for a run that must get through to the stores


class BrokenService:
    """An HTTP service that answers every request with 503 and counts them (a time-stamp authority)."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.calls += 1
            await JSONResponse({"error": "unavailable"}, status_code=503)(scope, receive, send)


@dataclass
class UrlServices:
    nvidia: Any
    nvidia_url: str
    neuroflash: Any
    neuroflash_url: str
    supabase: Any
    supabase_url: str
    gitlab: Any
    gitlab_url: str
    timestamp_authority: BrokenService
    timestamp_authority_url: str
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    user_info_only: bool = False

    def url(self, base: str, variable: str, path: str = "") -> str:
        return sentinel_url(base, variable, path, query=not self.user_info_only)

    def setenv(self, variable: str, value: str) -> None:
        self.monkeypatch.setenv(variable, value)

    def neuroflash_env(self) -> None:
        for name, value in {"NEUROFLASH_CLIENT_ID": NF_ID, "NEUROFLASH_CLIENT_SECRET": NF_SECRET,
                            "IMAGEGEN_NEUROFLASH_API_URL": f"{self.neuroflash_url}/api",
                            "IMAGEGEN_NEUROFLASH_TOKEN_URL": f"{self.neuroflash_url}/oauth/v2/token"}.items():
            self.setenv(name, value)

    def stores_env(self) -> dict[str, Any]:
        for name, value in {"SUPABASE_URL": self.supabase_url, "SUPABASE_KEY": SUPABASE_KEY,
                            "GITLAB_URL": self.gitlab_url, "GITLAB_TOKEN": GITLAB_TOKEN,
                            "IMAGEGEN_GITLAB_PROJECT": str(PROJECT_ID)}.items():
            self.setenv(name, value)
        return {"provider": {"name": "nvidia"}, "publish": {"small_store": "supabase", "large_store": "gitlab",
                                                            "size_threshold_bytes": 20_000}}


def _nvidia_base(s: UrlServices) -> dict[str, Any]:
    s.setenv("IMAGEGEN_NVIDIA_BASE_URL", sentinel_url(s.nvidia_url, "IMAGEGEN_NVIDIA_BASE_URL", "/v1/genai"))
    return {"provider": {"name": "nvidia"}}


def _nvcf_status(s: UrlServices) -> dict[str, Any]:
    s.nvidia.faults.accept_202 = True  # every answer is polled on the status URL
    s.setenv("IMAGEGEN_NVCF_STATUS_URL", sentinel_url(s.nvidia_url, "IMAGEGEN_NVCF_STATUS_URL",
                                                      "/v2/nvcf/pexec/status"))
    return {"provider": {"name": "nvidia"}}


def _nvcf_assets(s: UrlServices) -> dict[str, Any]:
    """The VLM fails every master, so each gets a FLUX.1 Kontext edit whose source goes through an
    NVCF asset (every source is over the inline limit here)."""
    from imagegen.providers.nvidia import NvidiaClient

    init = NvidiaClient.__init__

    def small_inline_limit(self, *args, **kwargs):
        kwargs["inline_image_limit"] = 100
        init(self, *args, **kwargs)

    s.monkeypatch.setattr(NvidiaClient, "__init__", small_inline_limit)
    s.nvidia.faults.chat_reply = '{"verdict": "fail", "reasons": ["garbled text"], "alt_text": "a mug"}'
    s.setenv("IMAGEGEN_NVCF_ASSETS_URL", sentinel_url(s.nvidia_url, "IMAGEGEN_NVCF_ASSETS_URL", "/v2/nvcf/assets"))
    return {"provider": {"name": "nvidia"}, "quality": {"vlm_review": True, "max_edit_attempts": 1}}


def _nim(s: UrlServices) -> dict[str, Any]:
    s.setenv("IMAGEGEN_NIM_URL", sentinel_url(s.nvidia_url, "IMAGEGEN_NIM_URL"))
    return {"provider": {"name": "nim"}}


def _vlm(s: UrlServices) -> dict[str, Any]:
    s.setenv("IMAGEGEN_VLM_BASE_URL", sentinel_url(s.nvidia_url, "IMAGEGEN_VLM_BASE_URL", "/v1"))
    return {"provider": {"name": "nvidia"}, "quality": {"vlm_review": True, "max_edit_attempts": 0}}


def _neuroflash_api(s: UrlServices) -> dict[str, Any]:
    s.neuroflash_env()
    s.setenv("IMAGEGEN_NEUROFLASH_API_URL", sentinel_url(s.neuroflash_url, "IMAGEGEN_NEUROFLASH_API_URL", "/api"))
    return {"provider": {"name": "neuroflash"}}


def _neuroflash_token(s: UrlServices) -> dict[str, Any]:
    s.neuroflash_env()
    s.setenv("IMAGEGEN_NEUROFLASH_TOKEN_URL", sentinel_url(s.neuroflash_url, "IMAGEGEN_NEUROFLASH_TOKEN_URL",
                                                           "/oauth/v2/token"))
    return {"provider": {"name": "neuroflash"}}


def _supabase(s: UrlServices) -> dict[str, Any]:
    brief = s.stores_env()
    s.supabase.echo = True  # and the gateway echoes the credentials it got (Basic auth from the user info)
    s.setenv("SUPABASE_URL", sentinel_url(s.supabase_url, "SUPABASE_URL"))
    return brief


def _gitlab(s: UrlServices) -> dict[str, Any]:
    """With user info only, python-gitlab's requests sends it as Basic auth beside PRIVATE-TOKEN, which
    GitLab goes by: publishing works, and the upload URLs it records are built from GITLAB_URL."""
    brief = s.stores_env()
    s.gitlab.echo = not s.user_info_only
    s.setenv("GITLAB_URL", s.url(s.gitlab_url, "GITLAB_URL"))
    return brief


def _catalog(s: UrlServices) -> dict[str, Any]:
    s.setenv("IMAGEGEN_CATALOG_URL", sentinel_url(closed_port_url("postgresql"), "IMAGEGEN_CATALOG_URL",
                                                  "/imagegen"))
    return {"provider": {"name": "nvidia"}}


def _timestamp(s: UrlServices) -> dict[str, Any]:
    from tests.c2pa_pki import make_pki

    pki = make_pki()
    (s.tmp_path / "chain.pem").write_bytes(pki["chain"])
    (s.tmp_path / "key.pem").write_bytes(pki["key"])
    s.setenv("IMAGEGEN_C2PA_CERT", str(s.tmp_path / "chain.pem"))
    s.setenv("IMAGEGEN_C2PA_KEY", str(s.tmp_path / "key.pem"))
    s.setenv("IMAGEGEN_C2PA_TIMESTAMP_URL", sentinel_url(s.timestamp_authority_url, "IMAGEGEN_C2PA_TIMESTAMP_URL",
                                                         "/tsa"))
    return {"provider": {"name": "nvidia"}}


# Where a run's texts are searched. The Prefect API and result storage are the session's (they hold
# every earlier test's runs too): searched for leaks, never taken as proof that this run showed the URL.
PRINTED, LOGGED, CATALOG, OUTPUT = "stdout/stderr/exceptions", "log records", "catalog rows", "output files"
API, RESULTS = "Prefect API (logs, artifacts, flow and task runs, events)", "Prefect result storage"
URL_CASES = [
    UrlCase("IMAGEGEN_NVIDIA_BASE_URL", _nvidia_base, 1, (PRINTED, LOGGED, OUTPUT)),
    UrlCase("IMAGEGEN_NVCF_STATUS_URL", _nvcf_status, 1, (PRINTED, LOGGED, OUTPUT)),
    UrlCase("IMAGEGEN_NVCF_ASSETS_URL", _nvcf_assets, 0, (LOGGED, CATALOG, OUTPUT)),  # edits fail: quarantined
    UrlCase("IMAGEGEN_NIM_URL", _nim, 1, (PRINTED, LOGGED, OUTPUT)),
    UrlCase("IMAGEGEN_VLM_BASE_URL", _vlm, 0, (LOGGED, CATALOG, OUTPUT)),  # reviews fail: quarantined
    UrlCase("IMAGEGEN_NEUROFLASH_API_URL", _neuroflash_api, 1, (PRINTED, LOGGED)),  # pre-flight
    UrlCase("IMAGEGEN_NEUROFLASH_TOKEN_URL", _neuroflash_token, 0, (LOGGED,),
            called=lambda s: s.neuroflash.calls["token"] > 0),  # the token endpoint ignores the Basic auth
    UrlCase("SUPABASE_URL", _supabase, 1, (LOGGED,), called=lambda s: s.supabase.refused > 0),
    UrlCase("GITLAB_URL", _gitlab, 1, (), called=lambda s: s.gitlab.refused > 0),
    UrlCase("GITLAB_URL", _gitlab, 0, (LOGGED, CATALOG, OUTPUT), user_info_only=True),  # published: URLs recorded
    UrlCase("IMAGEGEN_CATALOG_URL", _catalog, 1, (PRINTED,)),  # pre-flight
    UrlCase("IMAGEGEN_C2PA_TIMESTAMP_URL", _timestamp, 1, (), called=lambda s: s.timestamp_authority.calls > 0),
]


@pytest.fixture
def url_services(nvidia, nvidia_loopback, monkeypatch, tmp_path):
    neuroflash = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=1024)
    supabase = EchoingGateway(SupabaseEmulator(key=SUPABASE_KEY).app)
    gitlab = EchoingGateway(GitLabEmulator(token=GITLAB_TOKEN).app)
    tsa = BrokenService()
    with (serve_asgi(neuroflash.app) as nf_url, serve_asgi(supabase) as sb_url, serve_asgi(gitlab) as gl_url,
          serve_asgi(tsa) as tsa_url):
        neuroflash.base_url = nf_url
        yield UrlServices(nvidia=nvidia, nvidia_url=nvidia_loopback[1], neuroflash=neuroflash, neuroflash_url=nf_url,
                          supabase=supabase, supabase_url=sb_url, gitlab=gitlab, gitlab_url=gl_url,
                          timestamp_authority=tsa, timestamp_authority_url=tsa_url, monkeypatch=monkeypatch,
                          tmp_path=tmp_path)


@pytest.mark.parametrize("case", URL_CASES, ids=lambda c: c.variable + ("-user-info-only" if c.user_info_only else ""))
def test_credentials_in_a_url_setting_are_never_printed_or_stored(case, prefect_harness, url_services, fast_retries,
                                                                  tmp_path, capsys, caplog):
    """The variable's URL carries `user:SENTINEL...@` and `?token=SENTINEL...`: neither (nor the Basic
    auth credentials made of the user info) shows in stdout/stderr, exception texts, log records,
    run-summary.json, the catalog, the gallery, any output file, the Prefect API or result storage."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    caplog.set_level(logging.DEBUG, logger="imagegen")
    caplog.set_level(logging.INFO, logger="prefect")
    for name in ("httpx", "supabase", "storage3", "postgrest", "gitlab", "urllib3", "psycopg"):
        caplog.set_level(logging.DEBUG, logger=name)
    url_services.user_info_only = case.user_info_only
    brief = write_brief(tmp_path, f"url-{case.variable.lower().replace('_', '-')}", **case.configure(url_services))
    out = tmp_path / "out"
    texts: list[str] = []
    try:
        code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    except Exception as exc:  # noqa: BLE001 - an escaping exception's text is checked too
        code = 99
        texts.append(f"{type(exc).__name__}: {exc}\n{exc!r}")
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    records = {
        PRINTED: "\n".join(texts),
        LOGGED: caplog.text + "\n".join(r.getMessage() for r in caplog.records),  # text has the tracebacks
        CATALOG: json.dumps(catalog_rows(out)),
        OUTPUT: files_text(out).decode("latin-1"),  # run-summary.json, gallery, upload index, GX report...
        API: api_records(events_since=started),
        RESULTS: files_text(Path(PREFECT_LOCAL_STORAGE_PATH.value())).decode("latin-1"),
    }
    assert code == case.exit_code, records[PRINTED][-3000:]
    # each leak with the text around it, so a failure on CI says where the secret went
    leaks = [f"{needle} in {where}: ...{around(text, needle)}..."
             for where, text in records.items() for needle in url_leak_needles(case.variable) if needle in text]
    assert leaks == []
    # the URL was used, and shown masked: otherwise this test proves nothing
    assert [where for where in case.shown_in if f"{URL_USER}:***@" not in records[where]] == []
    assert case.called(url_services)
