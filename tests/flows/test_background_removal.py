"""Background removal end to end through the local provider: `publish.background` from the brief to
cut-out files (alpha where the format has it, a colour where asked), catalogued with their background;
a master whose cut-out is implausible is quarantined with the reason, never dropped."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imagegen.reconcile import REASONS_FILE
from imagegen_flows.deployments.cli import main as cli_main

pytestmark = pytest.mark.prefect

TARGETS = [{"name": "shop_png", "platform": "web", "width": 480, "height": 480, "format": "PNG", "max_bytes": None},
           {"name": "shop_webp", "platform": "web", "width": 480, "height": 600, "format": "WEBP"},
           {"name": "feed_jpeg", "platform": "web", "width": 480, "height": 480, "format": "JPEG"}]


def _run(tmp_path: Path, capsys, *, background: str, style: str, out: str = "out") -> tuple[dict, list]:
    brief = tmp_path / f"{out}.yaml"
    brief.write_text(yaml.safe_dump({
        "campaign": "packshots", "brand": {"name": "Acme", "palette": ["#2c3e50", "#4ecdc4", "#f4f1ea"]},
        "subjects": [{"subject": "a perfume bottle", "style": style, "composition": "centered"}],
        "size_sets": [], "targets": TARGETS,
        "quality": {"min_width": 512, "min_height": 512, "max_edit_attempts": 0, "check_brand_colors": False},
        "publish": {"background": background},
        "provider": {"name": "local", "master_width": 768, "master_height": 768}}))
    code = cli_main(["run", str(brief), "--out", str(tmp_path / out), "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    with sqlite3.connect(tmp_path / out / "catalog.db") as conn:
        rows = conn.execute("SELECT variant, format, url, status, gates, metadata, sha256 FROM media_assets").fetchall()
    return json.loads(captured.out), rows


def _local_file(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def test_removed_background_is_published_with_alpha_and_catalogued(prefect_harness, tmp_path, capsys, monkeypatch):
    from imagegen.imaging import cutout_store

    found = []  # the gate and the render both need the master's mask: it is found once
    monkeypatch.setattr(cutout_store, "subject_region",
                        lambda rgb, find=cutout_store.subject_region: found.append(rgb.size) or find(rgb))
    summary, rows = _run(tmp_path, capsys, background="remove", style="product")
    assert summary["published"] == 1, summary
    assert found == [(768, 768)]
    by_variant = {r[0]: r for r in rows}
    assert set(by_variant) == {"master", "cutout", "shop_png", "shop_webp", "feed_jpeg"}
    assert all(r[3] == "published" for r in rows)
    assert "cutout" in json.loads(by_variant["master"][4])["checked"]  # gated like any other check
    backgrounds = {variant: json.loads(r[5]).get("background") for variant, r in by_variant.items()}
    assert backgrounds == {"master": None, "cutout": "transparent", "shop_png": "transparent",
                           "shop_webp": "transparent", "feed_jpeg": "#ffffff"}
    for variant in ("cutout", "shop_png", "shop_webp"):
        with Image.open(_local_file(by_variant[variant][2])) as im:
            assert im.mode == "RGBA", variant
            alpha = np.asarray(im.getchannel("A"))
        assert (alpha == 0).mean() > 0.3 and (alpha == 255).mean() > 0.03, variant  # a subject, and backdrop gone
    with Image.open(_local_file(by_variant["feed_jpeg"][2])) as im:
        assert im.mode == "RGB"
        corner = np.asarray(im)[:8, :8].reshape(-1, 3)
    assert np.abs(corner.astype(int) - 255).max() <= 3  # flattened onto white: JPEG has no alpha
    with Image.open(_local_file(by_variant["master"][2])) as im:
        assert im.mode == "RGB"  # the master stays as generated


def test_colour_background_puts_the_subject_on_the_brand_colour(prefect_harness, tmp_path, capsys):
    summary, rows = _run(tmp_path, capsys, background="#4ECDC4", style="product")
    assert summary["published"] == 1, summary
    by_variant = {r[0]: r for r in rows}
    assert {json.loads(r[5]).get("background") for v, r in by_variant.items() if v != "master"} == {"#4ecdc4"}
    with Image.open(_local_file(by_variant["shop_png"][2])) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    exact = np.all(pixels == (0x4E, 0xCD, 0xC4), axis=1)
    assert exact.mean() > 0.3  # the backdrop is the colour itself, not near it


def test_an_implausible_cut_out_is_quarantined_with_its_reason(prefect_harness, tmp_path, capsys):
    # The neon grid of the cyberpunk look runs to the frame's edge: the mask does too, and the gate says so.
    summary, rows = _run(tmp_path, capsys, background="remove", style="cyberpunk")
    assert summary["quarantined"] == 1 and summary["published"] == 0, summary
    assert [r[0] for r in rows] == ["master"] and rows[0][3] == "quarantined"
    failures = json.loads(rows[0][4])["failures"]
    cutout = [f for f in failures if f["gate"] == "cutout"]
    assert cutout and cutout[0]["reason"].startswith("background removal: the cut-out runs along")
    reasons = json.loads((_local_file(rows[0][2]).parent / REASONS_FILE).read_text())  # beside the master
    assert any(r["gate"] == "cutout" for r in reasons["reasons"])


def test_briefs_without_background_publish_no_cut_out(prefect_harness, tmp_path, capsys):
    summary, rows = _run(tmp_path, capsys, background="keep", style="product")
    assert {r[0] for r in rows} == {"master", "shop_png", "shop_webp", "feed_jpeg"}
    assert all("background" not in json.loads(r[5]) for r in rows)
    assert "cutout" not in json.loads(rows[0][4])["checked"]
    assert "cutout_coverage" not in json.loads(rows[0][4])["measurements"]
