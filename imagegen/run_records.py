"""Where a run's record lives, and the index of every run in an output folder.

Several campaigns (and schedules) share one output folder, so each run keeps its gallery and summary in
a folder of its own that no other run writes: `<out>/runs/<campaign>/<UTC time>-<run id>/`. The top-level
`gallery.html` and `run-summary.json` are the latest run's, whichever campaign it was, for a quick look;
`<out>/index.html` lists every campaign and run with its counts, newest first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from imagegen.files import open_text_atomically

RUNS_FOLDER = "runs"
INDEX_PAGE = "index.html"
SUMMARY_FILE = "run-summary.json"

_env = Environment(loader=PackageLoader("imagegen", "templates"), autoescape=select_autoescape(["html"]))


def run_folder(out: Path, campaign: str, run_id: str, started_at: float | None = None) -> Path:
    """This run's own folder: sortable by time, unique by run id (campaign names are slugs)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at if started_at is not None else time.time()))
    label = "".join(c for c in run_id if c.isalnum())[-12:] or "run"
    return out / RUNS_FOLDER / campaign / f"{stamp}-{label}"


def recorded_runs(out: Path) -> dict[str, list[dict]]:
    """campaign -> its runs' summaries (newest first), each with `folder` relative to `out`. A summary that
    cannot be read (a run killed while writing it) is skipped: the index lists what is there."""
    campaigns: dict[str, list[dict]] = {}
    for path in sorted((out / RUNS_FOLDER).glob(f"*/*/{SUMMARY_FILE}"), reverse=True):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        summary["folder"] = path.parent.relative_to(out).as_posix()
        campaigns.setdefault(path.parent.parent.name, []).append(summary)
    return dict(sorted(campaigns.items()))


def write_index(out: Path) -> Path:
    """`<out>/index.html`, from the run folders on disk (so a run that ended elsewhere is listed too)."""
    page = out / INDEX_PAGE
    html = _env.get_template("index.html").render(campaigns=recorded_runs(out))
    with open_text_atomically(page, encoding="utf-8") as fh:
        fh.write(html)
    return page
