"""Analytics of real runs (local provider): the catalog's `image_analytics` rows, one per stored file with
every field filled, on SQLite and PostgreSQL; the report page beside the gallery, whose plots show what the
catalog holds; the markdown artifact; the README's query, run as written; an unchanged rerun adds nothing."""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml
from PIL import Image
from psycopg.rows import dict_row

from tests.flows.cli_runs import run_ok
from tests.stores import conftest as store_fixtures
from tests.unit.test_analytics import plots_of

pytestmark = pytest.mark.prefect

postgres_server_dsn = store_fixtures.postgres_server_dsn
postgres_dsn = store_fixtures.postgres_dsn

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN = "spring-launch"  # the README's query names it


def readme_query() -> str:
    """The README's image_analytics query: the one-line bash block of its Analytics section."""
    section = (REPO / "README.md").read_text().split("### Analytics\n", 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0]


def readme_catalog_command() -> str:
    """The README's look into the catalog: the `sqlite3` command of its "where to look" list."""
    line = next(line for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("- `imagegen-output/catalog.db`: `sqlite3 "))
    return line.split(": `", 1)[1].rsplit("`", 1)[0]


def write_brief(folder: Path, subjects: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "brief.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": CAMPAIGN, "brand": {"name": "Acme", "palette": ["#1a1a2e", "#e94560", "#f5f5f5"]},
        "subjects": [{"subject": "a ceramic mug with tulips", "style": "product", "lighting": "product"},
                     {"subject": "friends sharing iced coffee", "style": "lifestyle",
                      "lighting": "golden_hour"}][:subjects],
        "size_sets": [],
        "targets": [{"name": "square", "platform": "instagram", "width": 320, "height": 320},
                    {"name": "banner", "platform": "web", "width": 480, "height": 160, "format": "PNG"},
                    {"name": "post", "platform": "x", "width": 400, "height": 225, "format": "WEBP"}],
        "provider": {"name": "local", "master_width": 1024, "master_height": 1024}}))
    return path


def sqlite_rows(out: Path, query: str) -> list[dict]:
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(query)]
    conn.close()
    return rows


def check_records(records: list[dict], assets: list[dict]) -> None:
    """One record per media_assets row, each field filled and true to the stored file."""
    by_key = {(a["asset_id"], a["variant"]): a for a in assets}
    assert len(records) == len(assets) and {(r["asset_id"], r["variant"]) for r in records} == set(by_key)
    for record in records:
        asset = by_key[(record["asset_id"], record["variant"])]
        path = Path(asset["url"].removeprefix("file://"))
        with Image.open(path) as image:
            assert record["dimensions"] == f"{image.width}x{image.height}"
        assert record["filename"] == path.name
        assert record["size_kb"] * 1024 == path.stat().st_size == record["bytes"]
        assert record["format"] == asset["format"] and record["model"] == asset["model"] == "local-procedural-v1"
        assert record["generation_time"] == asset["generation_ms"] / 1000 > 0
        assert record["prompt_length"] == len(asset["prompt"]) > 0
        assert record["platform"] and record["provider"] == "local" and record["status"] == "published"


def analytics_artifact() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            f"{CAMPAIGN}-analytics"])))
    assert found and found[0].type == "markdown"
    return str(found[0].data)


def test_sqlite_records_report_page_artifact_readme_query_and_an_unchanged_rerun(prefect_harness, tmp_path, capsys):
    out = tmp_path / "imagegen-output"
    brief = write_brief(tmp_path / "brief")
    first = run_ok(capsys, brief, out)
    assets = sqlite_rows(out, "SELECT * FROM media_assets")
    records = sqlite_rows(out, "SELECT * FROM image_analytics")
    assert len(assets) == 2 * 4  # per master: itself and its three targets
    check_records(records, assets)

    # the page beside the gallery, linked from it, from the latest-run gallery and from the index
    page = Path(first["report"])
    assert page.parent == Path(first["gallery"]).parent and page.name == "report.html"
    link = page.relative_to(out).as_posix()
    for linking in (Path(first["gallery"]), out / "gallery.html", out / "index.html"):
        assert f'href="{link}"' in linking.read_text()
    plots = plots_of(page.read_text())
    latency, cost, gates, platforms = plots.values()
    assert sum(latency.values()) == 2 and all(label.startswith("local ") for label in latency)
    assert cost == {"local": 1.0, "this run, all providers": 1.0, "campaign so far (1 run)": 1.0}
    checked = json.loads(assets[0]["gates"])["checked"]
    for gate in checked:
        assert sum(v for label, v in gates.items() if label.split(" ", 1)[0] == gate) == 2  # every master, once
    by_platform: dict[str, float] = {}
    for record in records:
        by_platform[record["platform"]] = by_platform.get(record["platform"], 0) + record["bytes"]
    assert platforms == by_platform and set(platforms) == {"master", "instagram", "web", "x"}

    markdown = analytics_artifact()
    assert "| provider calls per published asset, this run | 1.00 |" in markdown and str(page) in markdown

    # the README's query, as written, from the folder that holds imagegen-output
    done = subprocess.run(shlex.split(readme_query()), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.split("|") for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == sorted(by_platform, key=lambda p: -by_platform[p])
    assert {line[0]: int(line[1]) for line in lines} == {p: sum(1 for r in records if r["platform"] == p)
                                                          for p in by_platform}

    # the README's look into the catalog, as written: one line per stored file, its columns in order
    done = subprocess.run(shlex.split(readme_catalog_command()), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    listed = [line.split("|") for line in done.stdout.splitlines()]
    assert len(listed) == len(records) and {row[6] for row in listed} == {"published"}
    assert {(row[0], row[1]) for row in listed} == {(r["asset_id"], r["variant"]) for r in records}

    # an unchanged rerun: no call, no file, the same records; its report counts the campaign's two runs
    again = run_ok(capsys, brief, out)
    assert (again["provider_calls"], again["files_written"], again["catalog_inserted"]) == (0, 0, 0)
    assert sqlite_rows(out, "SELECT * FROM image_analytics") == records
    rerun_cost = list(plots_of(Path(again["report"]).read_text()).values())[1]
    assert rerun_cost == {"this run, all providers": 0.0, "campaign so far (2 runs)": 1.0}


def test_postgres_catalog_gets_one_record_per_file(prefect_harness, tmp_path, capsys, monkeypatch, postgres_dsn):
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", postgres_dsn)
    out = tmp_path / "out"
    summary = run_ok(capsys, write_brief(tmp_path / "brief", subjects=1), out)
    assert summary["published"] == 1
    with psycopg.connect(postgres_dsn, row_factory=dict_row) as conn:
        assets = conn.execute("SELECT * FROM media_assets").fetchall()
        records = conn.execute("SELECT * FROM image_analytics").fetchall()
    check_records(records, assets)
    assert sum(plots_of(Path(summary["report"]).read_text())["Published bytes per platform"].values()) == sum(
        a["bytes"] for a in assets)
