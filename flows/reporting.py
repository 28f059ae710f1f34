"""The run's record: what it published, its gallery page, analytics report, run-summary.json and its Prefect
artifacts."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from imagegen.analytics import ReportTally
from imagegen.analytics_report import REPORT_PAGE, report_markdown, write_report_page
from imagegen.catalog.base import CatalogRow, UpsertResult
from imagegen.files import open_text_atomically
from imagegen.gallery import GalleryCards, write_gallery
from imagegen.publishing import PublishedFile
from imagegen.run_records import INDEX_PAGE, SUMMARY_FILE, recorded_runs, run_folder, write_index
from imagegen.summary import RepairedFile, RunSummary


@dataclass
class RunRecord:
    """What the run's record (summary, gallery, table artifact) needs of its catalog rows, gathered
    chunk by chunk so that a long run lets each chunk's rows (4-6 KB each) go once they are written."""

    gallery: GalleryCards  # this run's cards, drawn chunk by chunk
    statuses: dict[str, str] = field(default_factory=dict)  # asset id -> published / quarantined
    files_stored: int = 0
    files_written: int = 0
    files_removed: int = 0  # files of an earlier state (imagegen.reconcile)
    repaired: list[RepairedFile] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)  # the assets artifact, a line per file
    upserted: UpsertResult = field(default_factory=UpsertResult)
    analytics: ReportTally = field(default_factory=ReportTally)  # the figures of the analytics report

    def add(self, rows: list[CatalogRow], stored: list[PublishedFile]) -> None:
        self.statuses.update((row.asset_id, row.status) for row in rows)
        self.files_stored += len(stored)
        self.files_written += sum(1 for f in stored if f.stored.written)
        self.repaired += [f.repaired for f in stored if f.repaired]
        self.table += [{"asset_id": r.asset_id, "variant": r.variant, "status": r.status, "store": r.store,
                        "size": f"{r.width}x{r.height}", "format": r.format, "bytes": r.bytes,
                        "gates": "pass" if r.gates.get("passed") else "; ".join(
                            f["reason"] for f in r.gates.get("failures", [])), "url": r.url} for r in rows]
        self.gallery.add(rows)
        for row in rows:
            self.analytics.add(row)


def record_run(summary: RunSummary, record: RunRecord, catalog, out: Path, started: float, run_id: str) -> RunSummary:
    """The run's record: its own folder under `<out>/runs/` (gallery page, analytics page and summary, which
    no other run overwrites), the gallery and summary at the top of `out` as the latest run's, the index of
    every run, and the Prefect artifacts. The gallery shows what this run published or re-rendered."""
    statuses = record.statuses.values()
    folder = run_folder(out, summary.campaign, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summary.model_copy(update=dict(
        published=sum(1 for s in statuses if s == "published"),
        quarantined=sum(1 for s in statuses if s == "quarantined"),
        files_stored=record.files_stored, files_written=record.files_written, files_removed=record.files_removed,
        repaired=record.repaired, catalog_inserted=record.upserted.inserted, catalog_updated=record.upserted.updated,
        catalog_unchanged=record.upserted.unchanged, catalog_deleted=record.upserted.deleted,
        catalog=getattr(catalog, "path", None) or catalog.get_block_type_slug(),
        gallery=str(folder / "gallery.html"), report=str(folder / REPORT_PAGE),
        seconds=round(time.monotonic() - started, 2)))
    gallery_counts = {"masters": summary.masters, "published": summary.published, "quarantined": summary.quarantined,
                      "files": summary.files_stored, "provider_calls": summary.provider_calls}
    try:
        for page in (folder / "gallery.html", out / "gallery.html"):  # the cards' links start from `out`
            write_gallery(record.gallery, page, campaign=summary.campaign, summary=gallery_counts,
                          gx_report=summary.gx_report, cards_dir=out, report=summary.report)
    finally:
        record.gallery.close()
    for path in (folder / SUMMARY_FILE, out / SUMMARY_FILE):
        with open_text_atomically(path) as fh:
            fh.write(summary.model_dump_json(indent=2))
    markdown = write_report(summary, record, out, folder)
    write_index(out)
    report_artifacts(summary, record.table, markdown)
    return summary


def write_report(summary: RunSummary, record: RunRecord, out: Path, folder: Path) -> str:
    """The run's analytics page beside its gallery; returns the markdown of its key figures. The campaign's
    other runs recorded in `out` (their run-summary.json) add their provider calls to the campaign's."""
    others = [run for run in recorded_runs(out).get(summary.campaign, []) if out / run["folder"] != folder]
    report = record.analytics.report(summary.campaign, provider_calls=summary.provider_calls,
                                     calls_by_provider=summary.provider_calls_by_provider,
                                     earlier_calls=[int(run.get("provider_calls") or 0) for run in others])
    page = write_report_page(report, Path(summary.report), gallery_href="gallery.html",
                             index_href=Path(os.path.relpath(out / INDEX_PAGE, folder)).as_posix())
    return report_markdown(report, page)


def report_artifacts(summary: RunSummary, table: list[dict[str, Any]], analytics: str) -> None:
    key = summary.campaign.lower()
    create_table_artifact(key=f"{key}-assets", table=table, description=f"Assets of campaign {summary.campaign}")
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown="## imagegen run\n\n" + "\n".join(f"- {line}" for line in summary.lines()),
        description=f"Run summary of campaign {summary.campaign}")
    create_markdown_artifact(key=f"{key}-analytics", markdown=analytics,
                             description=f"Analytics of campaign {summary.campaign}: key figures, link to the plots")
