"""A full campaign publishing to Supabase Storage (small files) and GitLab (2 MB and over) through the
real supabase-py and python-gitlab clients, against loopback emulators: routing by size, URLs checked,
reruns that upload nothing, outages that leave no orphan file and no dangling row, a status change that
takes an asset's files out of (and back into) the public stores, and a tampered object repaired."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from imagegen.stores.supabase import PREFLIGHT_PREFIX
from tests.emulators.gitlab import PROJECT_ID, GitLabEmulator
from tests.emulators.serve import serve_asgi
from tests.emulators.supabase import SupabaseEmulator
from tests.flows.cli_runs import run

pytestmark = pytest.mark.prefect

SUPABASE_KEY = "sb-SENTINEL-flow"
GITLAB_TOKEN = "glpat-SENTINEL-flow"


@pytest.fixture
def stores(monkeypatch):
    supabase, gitlab = SupabaseEmulator(key=SUPABASE_KEY), GitLabEmulator(token=GITLAB_TOKEN)
    with serve_asgi(supabase.app) as supabase_url, serve_asgi(gitlab.app) as gitlab_url:
        monkeypatch.setenv("SUPABASE_URL", supabase_url)
        monkeypatch.setenv("SUPABASE_KEY", SUPABASE_KEY)
        monkeypatch.setenv("GITLAB_URL", gitlab_url)
        monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
        monkeypatch.setenv("IMAGEGEN_GITLAB_PROJECT", str(PROJECT_ID))
        yield supabase, gitlab


def write_brief(tmp_path: Path, campaign: str) -> Path:
    """Two masters at 2048 px: a grainy cyberpunk render (a PNG master over 2 MB) and a plain product shot."""
    brief = {
        "campaign": campaign,
        "brand": {"name": "Acme", "palette": ["#ff2e88", "#00e5ff", "#1a1a2e", "#f9f871"]},
        "subjects": [
            {"subject": "a neon motorcycle in a rainy city street", "style": "cyberpunk", "lighting": "moody",
             "composition": "leading_lines", "seed": 1001},
            {"subject": "a glass perfume bottle", "style": "product", "lighting": "product", "seed": 2002},
        ],
        "size_sets": [],
        "targets": [
            {"name": "feed_square", "platform": "web", "width": 800, "height": 800, "format": "JPEG"},
            {"name": "banner_webp", "platform": "web", "width": 1200, "height": 400, "format": "WEBP"},
        ],
        "provider": "local",
        # this test is about stores, not gates: accept the stand-in renders as they are
        "quality": {"max_edit_attempts": 0, "check_brand_colors": False, "min_sharpness": 0,
                    "max_noise_sigma": 50, "max_clipped_fraction": 1.0, "duplicate_max_distance": 0},
        "publish": {"small_store": "supabase", "large_store": "gitlab", "size_threshold_bytes": 2_000_000},
    }
    path = tmp_path / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def rows(out: Path) -> list[dict]:
    if not (out / "catalog.db").exists():
        return []
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets")]


def asset_uploads(supabase: SupabaseEmulator) -> list:
    """Supabase uploads of published files, not the pre-flight's probe objects."""
    return [c for c in supabase.calls_to("POST", "/storage/v1/object/") if f"/{PREFLIGHT_PREFIX}/" not in c.path]


def stored_keys(supabase: SupabaseEmulator, gitlab: GitLabEmulator) -> set[str]:
    return {f"supabase:{key}" for _, key in supabase.objects} | {
        f"gitlab:{u.filename}:{u.id}" for u in gitlab.uploads.values()}


def test_routes_by_size_verifies_urls_and_reruns_upload_nothing(prefect_harness, stores, tmp_path, capsys):
    supabase, gitlab = stores
    brief, out = write_brief(tmp_path, "stores-e2e"), tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    catalog = rows(out)
    assert len(catalog) == 2 * 3 and summary["files_written"] == 6
    for row in catalog:
        assert (row["store"] == "gitlab") == (row["bytes"] >= 2_000_000)
        assert json.loads(row["metadata"])["url_verified"] is True
    assert any(r["store"] == "gitlab" for r in catalog), "the cyberpunk master should be over 2 MB"
    assert len(supabase.objects) == sum(r["store"] == "supabase" for r in catalog)
    assert len(gitlab.uploads) == sum(r["store"] == "gitlab" for r in catalog)
    secret_free = json.dumps(catalog) + err + (out / "run-summary.json").read_text()
    assert SUPABASE_KEY not in secret_free and GITLAB_TOKEN not in secret_free

    uploads_before = (len(asset_uploads(supabase)),
                      len(gitlab.calls_to("POST", f"/api/v4/projects/{PROJECT_ID}/uploads")))
    code, summary, _ = run(capsys, brief, out)
    assert code == 0
    assert summary["provider_calls"] == 0 and summary["files_written"] == 0 and summary["catalog_inserted"] == 0
    assert (len(asset_uploads(supabase)),
            len(gitlab.calls_to("POST", f"/api/v4/projects/{PROJECT_ID}/uploads"))) == uploads_before
    assert len(supabase.calls_to("POST", f"/storage/v1/object/media-assets/{PREFLIGHT_PREFIX}/")) == 4
    assert len(supabase.objects) == sum(r["store"] == "supabase" for r in catalog), "a probe object was kept"


def test_store_outage_leaves_no_orphan_and_next_run_completes(prefect_harness, stores, tmp_path, capsys,
                                                             monkeypatch):
    from imagegen_flows.flows import campaign

    supabase, gitlab = stores
    brief, out = write_brief(tmp_path, "stores-outage"), tmp_path / "out"
    checked = campaign.check_stores

    def check_stores_then_break_supabase(*args):
        """Supabase fails after the pre-flight found it fine (which refuses a broken store before any spend)."""
        checked(*args)
        supabase.faults.outage = True  # GitLab takes the big master, then every Supabase upload fails

    monkeypatch.setattr(campaign, "check_stores", check_stores_then_break_supabase)
    code, summary, _ = run(capsys, brief, out)
    assert code == 1
    assert {f["stage"] for f in summary["failed"]} == {"publish"}
    assert rows(out) == [] and stored_keys(supabase, gitlab) == set(), "orphan files or dangling rows"

    monkeypatch.setattr(campaign, "check_stores", checked)
    supabase.faults.outage = False
    code, summary, _ = run(capsys, brief, out)
    assert code == 0 and summary["published"] == 2 and summary["provider_calls"] == 0
    assert len(rows(out)) == 6 and len(stored_keys(supabase, gitlab)) == 6


def test_catalog_outage_rolls_back_uploads(prefect_harness, stores, tmp_path, capsys, monkeypatch):
    """The catalog refuses the rows after the files went up (the pre-flight check found it fine, and it
    still reads): the run's uploads must then be removed from both stores."""
    from imagegen.catalog.sqlite import SqliteCatalog
    from imagegen.errors import CatalogError

    supabase, gitlab = stores
    brief, out = write_brief(tmp_path, "catalog-outage"), tmp_path / "out"

    def refuse(self, rows, remove=()):
        raise CatalogError("catalog write failed: database disk image is malformed")

    with monkeypatch.context() as patched:
        patched.setattr(SqliteCatalog, "upsert", refuse)
        code, _, err = run(capsys, brief, out)
    assert code == 1 and "catalog" in err.lower()
    uploads = [c for c in supabase.calls_to("POST", "/storage/v1/object/") + gitlab.calls_to("POST", "/uploads")
               if ".imagegen-preflight" not in c.path]  # the pre-flight's write probes are not the run's files
    assert len(uploads) == 6, "the files went up before the catalog refused their rows"
    assert stored_keys(supabase, gitlab) == set(), "uploads of a run whose rows were refused must be removed"

    code, summary, _ = run(capsys, brief, out)
    assert code == 0 and summary["catalog_inserted"] == 6
    assert len(stored_keys(supabase, gitlab)) == 6


def test_a_master_that_fails_to_publish_fails_alone(prefect_harness, tmp_path, capsys, monkeypatch):
    """One master's store write fails after its sibling has been published: the sibling keeps its files
    and rows (no row without a file, no file without a row), the failed one has neither, and a rerun
    publishes it. (With the chunk as one Prefect transaction, the failure rolled back the sibling's
    files while its rows were still written.)"""
    import time

    from imagegen.errors import StoreError
    from imagegen.stores.local import LocalFolderStore
    from tests.faults.conftest import consistency_problems

    brief = yaml.safe_load(write_brief(tmp_path, "fails-alone").read_text())
    brief.update(publish={"small_store": "local", "large_store": "local"},
                 targets=[{"name": "feed_square", "platform": "web", "width": 320, "height": 320, "format": "JPEG"}],
                 provider={"name": "local", "master_width": 512, "master_height": 512},
                 quality={**brief["quality"], "min_width": 256, "min_height": 256})
    path = tmp_path / "fails-alone.yaml"
    path.write_text(yaml.safe_dump(brief))
    out = tmp_path / "out"
    write = LocalFolderStore.write

    def refuse_the_perfume_late(self, key, source, content_type):
        if "perfume" in key and self.name == "local":
            time.sleep(2)  # the sibling is published by now
            raise StoreError(f"the disk refused {key}")
        return write(self, key, source, content_type)

    monkeypatch.setattr(LocalFolderStore, "write", refuse_the_perfume_late)
    code, summary, err = run(capsys, path, out)
    assert code == 1, err
    assert [f["stage"] for f in summary["failed"]] == ["publish"] and "perfume" in summary["failed"][0]["asset_id"]
    assert summary["published"] == 1
    assert consistency_problems(out, masters=1) == []  # every row's file exists, every file has its row
    assert not [r for r in rows(out) if "perfume" in r["asset_id"]]

    monkeypatch.setattr(LocalFolderStore, "write", write)
    code, summary, err = run(capsys, path, out)
    assert code == 0 and summary["published"] == 2, err
    assert consistency_problems(out, masters=2) == []


def test_a_status_change_takes_the_files_out_of_the_remote_stores_and_back(prefect_harness, stores, tmp_path,
                                                                         capsys):
    """Published to Supabase and GitLab, then quarantined by a stricter policy: every public file is
    removed (GitLab uploads deleted, not just forgotten) and only the quarantined master rows remain;
    published again, the six files and rows come back and the quarantine empties."""
    supabase, gitlab = stores
    brief, out = write_brief(tmp_path, "stores-flip"), tmp_path / "out"
    strict = yaml.safe_load(brief.read_text())
    strict["quality"]["min_width"] = 4096
    (tmp_path / "strict").mkdir()
    strict_brief = tmp_path / "strict" / brief.name
    strict_brief.write_text(yaml.safe_dump(strict))

    code, summary, err = run(capsys, brief, out)
    assert code == 0 and summary["published"] == 2, err
    public = stored_keys(supabase, gitlab)
    assert len(public) == 6 and any(k.startswith("gitlab:") for k in public)

    code, summary, err = run(capsys, strict_brief, out)
    assert code == 0 and summary["quarantined"] == 2 and summary["provider_calls"] == 0, err
    assert stored_keys(supabase, gitlab) == set(), "a quarantined master left files in the public stores"
    assert summary["files_removed"] == 6 and summary["catalog_deleted"] == 4
    assert {(r["variant"], r["status"], r["store"]) for r in rows(out)} == {("master", "quarantined", "quarantine")}
    assert len(rows(out)) == 2

    code, summary, err = run(capsys, brief, out)
    assert code == 0 and summary["published"] == 2, err
    assert len(stored_keys(supabase, gitlab)) == 6 and len(rows(out)) == 6
    assert {r["status"] for r in rows(out)} == {"published"}
    assert not [p for p in (out / "quarantine").rglob("*") if p.is_file()], "the quarantined copies stay"


def test_an_object_changed_in_supabase_is_found_and_rewritten(prefect_harness, stores, tmp_path, capsys):
    """Someone overwrote a published object through another client (no sha256 metadata): the next run
    hashes its bytes, reports it and uploads the row's bytes again, in place."""
    from tests.emulators.supabase import StoredObject

    supabase, gitlab = stores
    brief, out = write_brief(tmp_path, "stores-tampered"), tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 0, err
    row = next(r for r in rows(out) if r["store"] == "supabase" and r["variant"] == "feed_square")
    where = ("media-assets", row["store_key"])
    supabase.objects[where] = StoredObject(b"not the published image", "image/jpeg", "3600", {})

    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert [(r["location"], r["problem"], r["expected_sha256"]) for r in summary["repaired"]] == [
        (f"supabase:{row['store_key']}", "changed", row["sha256"])]
    assert hashlib.sha256(supabase.objects[where].data).hexdigest() == row["sha256"]
    assert rows(out) and {r["store_key"]: r["sha256"] for r in rows(out)}[row["store_key"]] == row["sha256"]
    assert len(stored_keys(supabase, gitlab)) == 6, "the repair stored a copy beside the key"
