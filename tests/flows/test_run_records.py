"""One run, one record: campaigns sharing an output folder keep their own gallery and summary, and
`<out>/index.html` lists every campaign and run with its counts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from tests.flows.cli_runs import run_ok

pytestmark = pytest.mark.prefect


def tiny_brief(folder: Path, campaign: str, subject: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump({
        "campaign": campaign, "brand": {"name": "Acme", "palette": ["#1a1a2e", "#e94560"]},
        "subjects": [{"subject": subject, "style": "product", "lighting": "product"}],
        "size_sets": [], "targets": [{"name": "square", "platform": "web", "width": 320, "height": 320}],
        "provider": {"name": "local", "master_width": 512, "master_height": 512}}))
    return path


def linked_files(page: Path) -> list[Path]:
    """Every image the page shows, resolved as a browser would (its <base>, if any, first)."""
    html = page.read_text()
    base = re.search(r'<base href="([^"]+)">', html)
    start = (page.parent / base.group(1)) if base else page.parent
    return [(start / unquote(src)).resolve() for src in re.findall(r'<img[^>]* src="([^"]+)"', html)]


def test_two_campaigns_in_one_folder_keep_their_own_record(prefect_harness, tmp_path, capsys):
    out = tmp_path / "out"
    first = run_ok(capsys, tiny_brief(tmp_path, "autumn-shoes", "a pair of leather boots"), out)
    second = run_ok(capsys, tiny_brief(tmp_path, "winter-coats", "a wool coat on a hanger"), out)
    again = run_ok(capsys, tiny_brief(tmp_path, "autumn-shoes", "a pair of leather boots"), out)

    pages = [Path(s["gallery"]) for s in (first, second, again)]
    assert len(set(pages)) == 3
    for summary, page in zip((first, second, again), pages, strict=True):
        assert page.parent.parent == out / "runs" / summary["campaign"]
        assert json.loads((page.parent / "run-summary.json").read_text())["gallery"] == str(page)
        html = page.read_text()
        assert f"<h1>{summary['campaign']}</h1>" in html
        shown = linked_files(page)
        assert shown and all(p.is_file() and p.parent.parent.parent.parent == out for p in shown)
    assert "autumn-shoes" in pages[0].read_text() and "winter-coats" not in pages[0].read_text()
    # the top-level page and summary are the latest run's, and their links work from there too
    assert json.loads((out / "run-summary.json").read_text())["gallery"] == str(pages[2])
    assert all(p.is_file() for p in linked_files(out / "gallery.html"))

    index = (out / "index.html").read_text()
    sections = dict(re.findall(r'<section class="campaign" id="([^"]+)">(.*?)</section>', index, re.S))
    assert set(sections) == {"autumn-shoes", "winter-coats"}
    assert sections["autumn-shoes"].count('<tr class="run">') == 2
    assert sections["winter-coats"].count('<tr class="run">') == 1
    for page in pages:
        assert f'href="{page.parent.relative_to(out).as_posix()}/gallery.html"' in index
