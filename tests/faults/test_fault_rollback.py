"""Failures say what went wrong first, and leave no file without its row: full runs publishing to a
Supabase emulator whose Storage refuses an upload, a HEAD check or the removals of a rollback.

- An upload refused mid-set: the master's files stored so far are removed; the summary names the
  refused upload. When Storage refuses those removals too, that second error is logged and the files
  left behind are listed beside the first failure (summary `left_behind`), never in its place.
- A HEAD check that fails after its upload succeeded: the file is removed again, so the failed master
  leaves nothing in the bucket; a rerun with the check passing publishes it.
- A catalog that refuses the rows while the removals are refused too: the run's error line names the
  catalog, and the removal failure is a second, logged error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import flows.campaign  # noqa: F401  (Prefect's logging set up at collection, see test_fault_bad_credentials)
from imagegen.stores.supabase import PREFLIGHT_PREFIX
from tests.emulators.serve import serve_asgi
from tests.emulators.supabase import SupabaseEmulator
from tests.faults.conftest import catalog_rows, write_brief
from tests.flows.cli_runs import run
from tests.prefect_records import api_records

pytestmark = pytest.mark.prefect

SUPABASE_KEY = "sb-SENTINEL-rollback"
STORES = {"small_store": "supabase", "large_store": "supabase"}
TARGETS = [{"name": "feed_square", "platform": "web", "width": 128, "height": 128, "format": "JPEG"},
           {"name": "banner_webp", "platform": "web", "width": 192, "height": 64, "format": "WEBP"}]
PROVIDER = {"name": "local", "master_width": 256, "master_height": 256}


class RefusingSupabase(SupabaseEmulator):
    """Storage that can refuse what a real bucket refuses: a content type its `allowed_mime_types` lacks
    (HTTP 415), a removal its row-level security forbids (HTTP 403), and a public URL that answers
    503 for a while (`head_fails_for`: keys containing it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.refused_types: set[str] = set()
        self.refuse_removals = False
        self.head_fails_for: str | None = None
        self.heads = 0

    async def object(self, request: Request) -> Response:
        if request.method == "POST" and self.refused_types:
            parts_type = request.headers.get("content-type", "")
            body = await request.body()
            if any(f"Content-Type: {t}".encode() in body for t in self.refused_types) and "multipart" in parts_type:
                return JSONResponse({"statusCode": "415", "error": "invalid_mime_type",
                                     "message": "mime type is not supported"}, status_code=400)
        return await super().object(request)

    async def public_object(self, request: Request) -> Response:
        if request.method == "HEAD":
            self.heads += 1
            if self.head_fails_for and self.head_fails_for in request.path_params["key"]:
                return Response(b"upstream timed out", status_code=503)
        return await super().public_object(request)

    async def remove(self, request: Request) -> Response:
        prefixes = (await request.json()).get("prefixes", [])
        if self.refuse_removals and any(not key.startswith(PREFLIGHT_PREFIX) for key in prefixes):
            return JSONResponse({"statusCode": "403", "error": "Unauthorized",
                                 "message": "new row violates row-level security policy"}, status_code=400)
        return await super().remove(request)

    def asset_keys(self) -> set[str]:
        return {key for _, key in self.objects if not key.startswith(PREFLIGHT_PREFIX)}


@pytest.fixture
def supabase(monkeypatch):
    emulator = RefusingSupabase(key=SUPABASE_KEY)
    with serve_asgi(emulator.app) as url:
        monkeypatch.setenv("SUPABASE_URL", url)
        monkeypatch.setenv("SUPABASE_KEY", SUPABASE_KEY)
        yield emulator


def brief(tmp_path: Path, campaign: str) -> Path:
    return write_brief(tmp_path, campaign, provider=PROVIDER, targets=TARGETS, publish=STORES)


def row_keys(out: Path) -> set[str]:
    return {r["store_key"] for r in catalog_rows(out)}


def logged(text: str) -> bool:
    return text in api_records()


def test_refused_upload_and_refused_removals_report_the_upload(prefect_harness, supabase, tmp_path, capsys):
    supabase.refused_types = {"image/webp"}
    supabase.refuse_removals = True
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief(tmp_path, "refused-removal"), out)
    assert code == 1, err
    assert len(summary["failed"]) == 2 and {f["stage"] for f in summary["failed"]} == {"publish"}
    for failure in summary["failed"]:
        assert "uploading to" in failure["reason"] and "HTTP 415 invalid_mime_type" in failure["reason"]
        assert "deleting" not in failure["reason"] and "row-level" not in failure["reason"]
    left = [line for f in summary["failed"] for line in f["left_behind"]]
    # what was stored before the refused upload (the master and the JPEG) is left, and listed as such
    assert {line.split(" ", 1)[0].removeprefix("supabase:") for line in left} == supabase.asset_keys()
    assert len(left) == 4 and all("deleting" in line for line in left)
    assert catalog_rows(out) == []
    assert logged("and removing what it had stored failed too"), "the refused removal was not logged"
    text = (out / "run-summary.json").read_text()
    assert "left_behind" in text and SUPABASE_KEY not in text + err


def test_refused_upload_removes_what_the_master_stored(prefect_harness, supabase, tmp_path, capsys):
    supabase.refused_types = {"image/webp"}
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief(tmp_path, "refused-upload"), out)
    assert code == 1, err
    assert [f["left_behind"] for f in summary["failed"]] == [[], []]
    assert supabase.asset_keys() == set() and catalog_rows(out) == []


def test_a_failed_head_check_leaves_no_orphan(prefect_harness, supabase, fast_retries, tmp_path, capsys):
    supabase.head_fails_for = "-v02-"  # every URL of the second master answers 503 to HEAD
    path, out = brief(tmp_path, "head-fails"), tmp_path / "out"
    code, summary, err = run(capsys, path, out)
    assert code == 1, err
    assert [(f["asset_id"][-12:-9], f["stage"]) for f in summary["failed"]] == [("v02", "publish")]
    assert "HEAD of the published URL answered HTTP 503" in summary["failed"][0]["reason"]
    assert summary["published"] == 1
    assert supabase.asset_keys() == row_keys(out) and len(row_keys(out)) == 3, "orphan file in the bucket"
    assert summary["failed"][0]["left_behind"] == []
    assert not any("-v02-" in key for key in supabase.asset_keys())

    supabase.head_fails_for = None
    code, summary, err = run(capsys, path, out)
    assert code == 0, err
    assert summary["published"] == 2 and supabase.asset_keys() == row_keys(out) and len(row_keys(out)) == 6
    assert all(json.loads(r["metadata"])["url_verified"] for r in catalog_rows(out))


def test_catalog_refusal_stays_the_error_when_removals_are_refused(prefect_harness, supabase, tmp_path, capsys,
                                                                   monkeypatch):
    from imagegen_flows.flows import publish_stage

    broken = tmp_path / "broken.db"
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", f"sqlite:///{broken}")
    read = publish_stage.read_recorded

    def read_then_break_the_catalog_and_the_removals(*args):
        """Both break after the flow's pre-flight found them fine (it refuses a broken catalog) and the
        publish stage read the rows it starts from: the catalog refuses the rows of the files stored."""
        recorded = read(*args)
        broken.write_bytes(b"this is not a database" * 100)
        supabase.refuse_removals = True  # the store pre-flight's probe object still goes (not an asset key)
        return recorded

    monkeypatch.setattr(publish_stage, "read_recorded", read_then_break_the_catalog_and_the_removals)
    code, summary, err = run(capsys, brief(tmp_path, "catalog-and-removal"), tmp_path / "out")
    assert code == 1 and summary is None
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "catalog" in error_lines[0].lower(), err
    assert "deleting" not in error_lines[0] and "row-level" not in error_lines[0]
    assert len(supabase.asset_keys()) == 6  # left behind, and said so:
    assert logged("the catalog refused the rows, and removing the 6 file(s) written for them failed too")
