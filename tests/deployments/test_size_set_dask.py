"""The size-set flow's re-renders on a Dask cluster (prefect-dask): the same files and rows as the thread pool.

A `distributed.LocalCluster` of 2 worker processes stands in for a cluster; the flow itself runs in-process
on the session's Prefect test harness, and so reads and writes the same paths as the workers.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from imagegen.errors import SettingsError
from imagegen_flows.flows import render_cluster
from imagegen_flows.flows.campaign import campaign_flow
from imagegen_flows.flows.size_sets import size_set_flow
from tests.deployments.conftest import _write_brief

pytestmark = pytest.mark.prefect

SUBJECTS = [
    {"subject": "a copper kettle on a gas stove", "style": "product", "lighting": "product",
     "composition": "rule_of_thirds", "mood": "elegant"},
    {"subject": "a folded wool blanket on a bench", "style": "lifestyle", "lighting": "golden_hour",
     "composition": "leading_lines", "mood": "energetic"},
]
# what a re-render decides; where the file went (url, store_key's folder) and when (created_at) differ per folder
COMPARED = ("asset_id", "variant", "width", "height", "format", "bytes", "sha256", "status", "prompt", "seed")


@pytest.fixture(scope="module")
def dask_cluster():
    """A LocalCluster of 2 worker processes, one thread each (its scheduler runs in this process)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def renders_done(cluster) -> int:
    """How many render_master tasks the cluster's workers have finished so far."""
    prefix = cluster.scheduler.task_prefixes.get("render_master")
    return prefix.state_counts["memory"] if prefix is not None else 0


@pytest.fixture
def published(prefect_harness, tmp_path) -> tuple[Path, Path]:
    """A brief and an output folder where its 2 masters (1024 px) are published and cataloged."""
    brief = _write_brief(tmp_path, "size-set-dask", subjects=SUBJECTS)
    out = tmp_path / "published"
    assert campaign_flow(brief=str(brief), out_dir=str(out)).published == 2
    return brief, out


def catalog_rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "catalog.db") as conn:
        return conn.execute(f"SELECT {', '.join(COMPARED)} FROM media_assets ORDER BY asset_id, variant").fetchall()


def file_digests(out: Path) -> dict[str, str]:
    """sha256 of every file the catalog points at, by asset and variant, read from disk."""
    with sqlite3.connect(out / "catalog.db") as conn:
        found = conn.execute("SELECT asset_id, variant, url FROM media_assets").fetchall()
    return {f"{aid}/{variant}": hashlib.sha256(Path(url.removeprefix("file://")).read_bytes()).hexdigest()
            for aid, variant, url in found}


def test_dask_renders_the_same_files_and_rows_as_the_thread_pool(published, tmp_path, dask_cluster):
    brief, out = published
    on_threads, on_dask = tmp_path / "threads", tmp_path / "dask"
    # the same catalog and masters twice; catalog urls name the published folder, whose files are only read
    shutil.copytree(out, on_threads)
    shutil.copytree(out, on_dask)

    before = renders_done(dask_cluster)
    by_threads = size_set_flow(brief=str(brief), size_sets=["social_weekly"], out_dir=str(on_threads))
    assert renders_done(dask_cluster) == before  # without an address nothing goes to the cluster
    by_dask = size_set_flow(brief=str(brief), size_sets=["social_weekly"], out_dir=str(on_dask),
                            dask_address=dask_cluster.scheduler_address)
    assert renders_done(dask_cluster) == before + 2  # one render per master, on the workers

    assert not by_threads.failed and not by_dask.failed
    assert by_threads.rerendered == by_dask.rerendered == 2
    assert by_dask.catalog_inserted == by_threads.catalog_inserted > 2
    assert catalog_rows(on_dask) == catalog_rows(on_threads)
    digests = file_digests(on_dask)
    assert digests == file_digests(on_threads)
    assert {key.split("/")[1] for key in digests} >= {"instagram_square", "facebook_feed"}


def test_dask_address_from_the_environment(published, dask_cluster, monkeypatch):
    brief, out = published
    monkeypatch.setenv("IMAGEGEN_DASK_ADDRESS", dask_cluster.scheduler_address)
    before = renders_done(dask_cluster)
    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out))
    assert not summary.failed and summary.rerendered == 2 and summary.catalog_inserted == 2
    assert renders_done(dask_cluster) == before + 2


@pytest.mark.parametrize("where", ["parameter", "environment"])
def test_unreachable_scheduler_is_one_line_before_any_work(published, where, monkeypatch):
    brief, out = published
    monkeypatch.setattr(render_cluster, "DASK_CONNECT_SECONDS", 2.0)
    nobody = "tcp://127.0.0.1:9"  # discard: nothing listens there
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    parameter = nobody if where == "parameter" else None
    if where == "environment":
        monkeypatch.setenv("IMAGEGEN_DASK_ADDRESS", nobody)

    with pytest.raises(SettingsError) as caught:
        size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out), dask_address=parameter)

    name = "dask_address" if where == "parameter" else "IMAGEGEN_DASK_ADDRESS"
    message = str(caught.value)
    assert message.startswith(f"{name}: no Dask scheduler answered at {nobody} within 2 s (")
    assert "\n" not in message
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing fetched, rendered or written


def hide_from_this_process(prefix: str | None) -> None:
    """Run on each worker: files under `prefix` look unreadable there (None: readable again), as on a
    machine that does not share the flow's output folder."""
    import os

    real = getattr(os.access, "real_access", os.access)
    if prefix is None:
        os.access = real
        return

    def access(path, mode, *args, **kwargs):
        return False if str(path).startswith(prefix) else real(path, mode, *args, **kwargs)

    access.real_access = real
    os.access = access


def test_a_worker_that_cannot_read_the_masters_fails_each_one_by_name(published, dask_cluster):
    from distributed import Client

    brief, out = published
    masters = str(out / "masters")
    with Client(dask_cluster, set_as_default=False) as client:
        client.run(hide_from_this_process, masters)
    try:
        summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out),
                                dask_address=dask_cluster.scheduler_address)
    finally:
        with Client(dask_cluster, set_as_default=False) as client:
            client.run(hide_from_this_process, None)

    assert summary.rerendered == 2 and summary.catalog_inserted == 0
    assert [f.stage for f in summary.failed] == ["render", "render"]
    for failure in summary.failed:
        assert failure.reason.startswith(f"RenderInputUnreadable: cannot read the master {masters}/")
        assert "each Dask worker" in failure.reason
    assert not list(out.rglob("pinterest_pin*"))
