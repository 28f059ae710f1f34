"""End-to-end runs of the campaign flow on the embedded defaults (local provider, local folder, SQLite).

One Prefect server serves the whole session; each test uses its own output folder.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image

from imagegen.imaging.encode import read_xmp
from imagegen.imaging.metrics import sniff_format
from imagegen_flows.deployments.cli import main as cli_main

pytestmark = pytest.mark.prefect

PALETTE = ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50", "#ffffff"]


def small_brief(tmp_path: Path, campaign: str = "flow-test", **quality) -> Path:
    """A quick brief: two masters at 1024 px, a few targets, every stage exercised."""
    brief = {
        "campaign": campaign,
        "brand": {"name": "Acme", "palette": PALETTE},
        "subjects": [
            {"subject": "a luxury wrist watch on a marble plinth", "style": "product", "lighting": "product",
             "composition": "rule_of_thirds", "mood": "elegant"},
            {"subject": "a pair of running shoes", "style": "lifestyle", "lighting": "golden_hour",
             "composition": "leading_lines", "mood": "energetic"},
        ],
        "size_sets": ["linkedin"],
        "targets": [
            {"name": "square_webp", "platform": "web", "width": 640, "height": 640, "format": "WEBP"},
            {"name": "banner_png", "platform": "web", "width": 900, "height": 300, "format": "PNG"},
            {"name": "tall_avif", "platform": "web", "width": 360, "height": 640, "format": "AVIF"},
        ],
        "provider": {"name": "local", "master_width": 1024, "master_height": 1024},
        "quality": {"max_edit_attempts": 1, **quality},
    }
    path = tmp_path / "brief.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def run_cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = cli_main(["run", *args, "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out) if code in (0, 1) and captured.out.strip() else None
    return code, summary, captured.err


def catalog_rows(out: Path) -> list[dict]:
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets ORDER BY asset_id, variant")]


@pytest.fixture(scope="module")
def first_run(prefect_harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full-run")
    brief, out = small_brief(tmp), tmp / "out"
    code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    return code, brief, out


def test_full_run_publishes_every_variant_with_provenance(first_run):
    code, _, out = first_run
    assert code == 0
    summary = json.loads((out / "run-summary.json").read_text())
    assert summary["masters"] == 2 and summary["published"] == 2 and summary["quarantined"] == 0
    assert summary["provider_calls"] == 2
    rows = catalog_rows(out)
    # per master: the master itself + linkedin_post + 3 explicit targets
    assert len(rows) == 2 * 5
    expected = {"master": (1024, 1024, "PNG"), "linkedin_post": (1200, 627, "JPEG"),
                "square_webp": (640, 640, "WEBP"), "banner_png": (900, 300, "PNG"), "tall_avif": (360, 640, "AVIF")}
    for row in rows:
        width, height, fmt = expected[row["variant"]]
        path = Path(row["url"].removeprefix("file://"))
        assert path.is_file() and path.is_relative_to(out / "assets")
        with Image.open(path) as im:
            assert (im.width, im.height) == (width, height)
        assert sniff_format(path.read_bytes()[:64]) == fmt == row["format"]
        assert (row["width"], row["height"], row["bytes"]) == (width, height, path.stat().st_size)
        xmp = read_xmp(path)
        assert "digitalsourcetype" in xmp.lower() and "AlgorithmicMedia" in xmp
        assert str(row["seed"]) in xmp
        assert row["status"] == "published" and row["provider"] == "local" and row["store"] == "local"
        gates = json.loads(row["gates"])
        assert gates["passed"] is True and "sharpness" in gates["checked"]
        assert len(row["sha256"]) == 64 and row["phash"]
        assert json.loads(row["metadata"])["stand_in"] is True
    assert (out / "gallery.html").is_file()
    assert (out / "gx-report" / "index.html").is_file()
    html = (out / "gallery.html").read_text()
    assert html.count("<figure") == len(rows)


def test_unchanged_rerun_spends_nothing_writes_nothing(first_run, capsys):
    _, brief, out = first_run
    before = catalog_rows(out)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "assets").rglob("*") if p.is_file()}
    code, summary, _ = run_cli(capsys, str(brief), "--out", str(out))
    assert code == 0
    assert summary["provider_calls"] == 0
    assert summary["files_written"] == 0
    assert summary["catalog_inserted"] == 0 and summary["catalog_updated"] == 0
    assert catalog_rows(out) == before
    assert {p: p.stat().st_mtime_ns for p in (out / "assets").rglob("*") if p.is_file()} == mtimes


def test_broken_brief_exits_before_anything_is_written(prefect_harness, tmp_path, capsys):
    brief = yaml.safe_load(small_brief(tmp_path).read_text())
    brief["brand"]["palette"][1] = "teal"
    brief["subjects"][0]["mood"] = "call me at jane.doe@example.com"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(brief))
    out = tmp_path / "never"
    code = cli_main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "brand.palette[1]" in err and "subjects[0].mood" in err
    assert not out.exists()


def test_forced_gate_failure_is_quarantined_with_reasons(prefect_harness, tmp_path, capsys):
    brief = small_brief(tmp_path, "flow-test-quarantine", min_width=4096)
    out = tmp_path / "out"
    code, summary, _ = run_cli(capsys, str(brief), "--out", str(out))
    assert code == 0
    assert summary["published"] == 0 and summary["quarantined"] == 2
    rows = catalog_rows(out)
    assert {r["variant"] for r in rows} == {"master"} and {r["status"] for r in rows} == {"quarantined"}
    for row in rows:
        gates = json.loads(row["gates"])
        assert any(f["gate"] == "resolution" and "4096" in f["reason"] for f in gates["failures"])
        assert len(gates["history"]) == 2  # the original and one regeneration, both failed
        path = Path(row["url"].removeprefix("file://"))
        assert path.is_file() and path.is_relative_to(out / "quarantine")
        reasons = json.loads((path.parent / "reasons.json").read_text())
        assert reasons["reasons"] and reasons["sha256"] == row["sha256"]
    # every version the edit stage produced is still on disk
    assert len(list((out / "masters").glob("*.png"))) == 4


def test_run_leaves_prefect_artifacts(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        table = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flow-test-assets"])))
        summary = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flow-test-summary"])))
    assert table and table[0].type == "table"
    assert len(json.loads(table[0].data)) == 10
    assert summary and summary[0].type == "markdown" and "provider calls" in summary[0].data


def test_web_delivery_grade_border_responsive_picture(prefect_harness, tmp_path, capsys):
    brief = yaml.safe_load(small_brief(tmp_path).read_text())
    brief["campaign"] = "web-delivery"
    brief["subjects"] = brief["subjects"][:1]
    brief["brand"].update(grade="warm", border={"width": 0.05, "colour": "#2c3e50"})
    brief["publish"] = {"responsive": {"enabled": True, "formats": ["AVIF", "WEBP", "JPEG"], "max_width": 1024,
                                       "bytes_step": 15000, "max_images": 3, "sizes": "50vw"},
                        "ssim_floor": 0.9}
    path, out = tmp_path / "web.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(brief))
    code, summary, err = run_cli(capsys, str(path), "--out", str(out))
    assert code == 0, err
    rows = catalog_rows(out)
    web = [r for r in rows if r["variant"].startswith("web_")]
    assert {r["format"] for r in web} == {"AVIF", "WEBP", "JPEG"}
    assert all(r["width"] <= 1024 for r in web)
    metadata = json.loads(rows[0]["metadata"])
    picture = metadata["picture"]
    assert picture.index("image/avif") < picture.index("image/webp") < picture.index("<img")
    assert 'sizes="50vw"' in picture and f'alt="{rows[0]["alt_text"]}"' in picture
    assert len(metadata["blurhash"]) >= 6
    # the border is inside the target size, in the brand colour; graded and bordered files are composites
    banner = next(r for r in rows if r["variant"] == "banner_png")
    with Image.open(banner["url"].removeprefix("file://")) as im:
        assert im.size == (900, 300)
        assert im.convert("RGB").getpixel((2, 2)) == (0x2C, 0x3E, 0x50)
    assert "compositeWithTrainedAlgorithmicMedia" in read_xmp(banner["url"].removeprefix("file://"))
    assert "<picture" in (out / "gallery.html").read_text()


def test_c2pa_signed_run_reads_back_trusted_and_reruns_write_nothing(prefect_harness, tmp_path, capsys,
                                                                      monkeypatch):
    """With IMAGEGEN_C2PA_CERT/KEY set, every published file carries a signed manifest (created by
    the model; graded and bordered files also edited); signed bytes are not deterministic, so the
    rerun relies on the signed-file cache to store nothing new."""
    from imagegen.imaging.c2pa_signing import read_manifest
    from tests.c2pa_pki import make_pki

    pki = make_pki()
    (tmp_path / "chain.pem").write_bytes(pki["chain"])
    (tmp_path / "key.pem").write_bytes(pki["key"])
    monkeypatch.setenv("IMAGEGEN_C2PA_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("IMAGEGEN_C2PA_KEY", str(tmp_path / "key.pem"))
    brief = yaml.safe_load(small_brief(tmp_path).read_text())
    brief.update(campaign="c2pa-signed", subjects=brief["subjects"][:1], size_sets=[])
    brief["brand"].update(grade="cool")
    brief["provider"].update(master_width=512, master_height=512)
    brief["quality"].update(min_width=256, min_height=256)
    brief["subjects"][0]["seed"] = 4242
    path, out = tmp_path / "signed.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(brief))

    code, summary, err = run_cli(capsys, str(path), "--out", str(out))
    assert code == 0, err
    rows = catalog_rows(out)
    assert {r["variant"] for r in rows} == {"master", "square_webp", "banner_png", "tall_avif"}
    for row in rows:
        data = Path(row["url"].removeprefix("file://")).read_bytes()
        manifest = read_manifest(data, row["format"], pki["ca"])
        assert manifest is not None and manifest.validation_state == "Trusted", row["variant"]
        actions = [a["action"] for a in manifest.actions]
        assert actions[0] == "c2pa.created" and "c2pa.edited" in actions  # the cool grade is an edit
        credentials = json.loads(row["metadata"])["content_credentials"]
        assert credentials["c2pa"] == "signed" and len(credentials["unsigned_sha256"]) == 64
        assert credentials["unsigned_sha256"] != row["sha256"]  # the row names the signed file's bytes
    assert (out / "gallery.html").read_text().count('data-c2pa="signed"') == len(rows)
    assert pki["key"].decode().splitlines()[1] not in (out / "catalog.db").read_bytes().decode("latin-1")

    code, summary, err = run_cli(capsys, str(path), "--out", str(out))
    assert code == 0, err
    assert summary["files_written"] == 0 and summary["catalog_inserted"] == 0 and summary["catalog_updated"] == 0
    assert catalog_rows(out) == rows


def test_broken_signing_identity_fails_before_any_provider_call(prefect_harness, tmp_path, capsys, monkeypatch):
    (tmp_path / "chain.pem").write_text("not a certificate")
    monkeypatch.setenv("IMAGEGEN_C2PA_CERT", str(tmp_path / "chain.pem"))
    monkeypatch.setenv("IMAGEGEN_C2PA_KEY", str(tmp_path / "missing.pem"))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, str(small_brief(tmp_path, campaign="c2pa-broken")), "--out", str(out))
    assert code == 1
    assert "IMAGEGEN_C2PA_KEY" in err and "is not a readable file" in err
    assert not (out / "masters").exists() and not (out / "assets").exists()


def test_palette_and_thumbnails_are_published(first_run):
    """The seed's dominant-palette extraction and thumbnails: a palette per asset in the catalog and
    the gallery; the `thumbnails` size set is ordinary targets."""
    from imagegen.sizes import BUILTIN_SIZE_SETS

    _, _, out = first_run
    rows = catalog_rows(out)
    palette = json.loads(rows[0]["metadata"])["palette"]
    assert 1 <= len(palette) <= 5 and all(c["hex"].startswith("#") and len(c["hex"]) == 7 for c in palette)
    assert abs(sum(c["share"] for c in palette) - 1) < 0.01
    assert (out / "gallery.html").read_text().count("data-palette=") == 2
    assert {(t.width, t.height) for t in BUILTIN_SIZE_SETS["thumbnails"]} == {(150, 150), (300, 300)}


def test_logo_sits_at_its_corner_with_its_margin_and_opacity(prefect_harness, tmp_path, capsys):
    Image.new("RGBA", (100, 50), (255, 0, 0, 255)).save(tmp_path / "logo.png")
    brief = yaml.safe_load(small_brief(tmp_path).read_text())
    brief.update(campaign="logo-margin", subjects=brief["subjects"][:1], size_sets=[],
                 targets=[{"name": "card", "platform": "web", "width": 600, "height": 300, "format": "PNG"}])
    brief["subjects"][0]["seed"] = 5151
    brief["brand"]["logo"] = {"path": "logo.png", "position": "nw", "opacity": 1.0, "scale": 0.2, "margin": 0.1}
    brief["provider"].update(master_width=512, master_height=512)
    brief["quality"].update(min_width=256, min_height=256)
    path, out = tmp_path / "logo.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(brief))
    code, _, err = run_cli(capsys, str(path), "--out", str(out))
    assert code == 0, err
    card = next(r for r in catalog_rows(out) if r["variant"] == "card")
    with Image.open(card["url"].removeprefix("file://")) as im:
        rgb = im.convert("RGB")
        # margin 0.1 of the shorter side (30 px); the logo is 0.2 of the width (120 x 60 px)
        assert rgb.getpixel((31, 31)) == (255, 0, 0) and rgb.getpixel((148, 88)) == (255, 0, 0)
        assert rgb.getpixel((28, 28)) != (255, 0, 0) and rgb.getpixel((152, 92)) != (255, 0, 0)
    assert "compositeWithTrainedAlgorithmicMedia" in read_xmp(card["url"].removeprefix("file://"))
