"""Hostile input, from the provider and from the brief.

Provider answers are untrusted: a PNG header claiming 100000x100000, a decompression bomb (a small
file that inflates to 144 MP), non-image bytes, a format we do not publish, and answers with the wrong
content type never become a master, are not retried unless retrying can help, and leave no file.
Briefs are untrusted too: path traversal in names, files outside the brief's folder, over-long fields,
duplicate JSON keys, oversized files, nesting hundreds of thousands of levels deep, and true/false or
NaN/infinity for a number exit 2 naming the field (or line) before anything is written, never with a
traceback; valid Unicode subjects work end to end.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from PIL import Image

from imagegen_flows.deployments.cli import main as cli_main
from tests.faults.conftest import catalog_rows, consistency_problems, master_files, write_brief

pytestmark = pytest.mark.prefect

SMALL_LOCAL = {"name": "local", "master_width": 256, "master_height": 256}
SMALL_TARGET = [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"}]


def run(capsys, brief, out, *extra: str) -> tuple[int, dict | None, str]:
    code = cli_main(["run", str(brief), "--out", str(out), "--json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


# --------------------------------------------------------------------------- crafted images

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def huge_header_png() -> bytes:
    """Claims 100000 x 100000 (10 gigapixels) and carries 1 KB of pixel data."""
    return grey_png(100_000, 100_000, zlib.compress(b"\0" * 1024))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A real, valid 12000 x 12000 greyscale PNG of zeros: ~140 KB that inflate to 144 MP (under Pillow's
    own error limit of ~179 MP, over the 64 MP a provider answer may have)."""
    side = 12_000
    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return grey_png(side, side, idat)


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (1024, 1024), 3).save(buffer, "GIF")
    return buffer.getvalue()


def assert_nothing_kept(out: Path) -> None:
    assert master_files(out) == [], "an unverified provider answer was stored as a master"
    assert catalog_rows(out) == []
    assert not (out / "assets").exists() or not any(p.is_file() for p in (out / "assets").rglob("*"))


# --------------------------------------------------------------------------- provider answers

@pytest.mark.parametrize("kind, expected_reason", [
    ("huge_header", r"pixel cap|DecompressionBomb"),
    ("bomb", r"12000x12000 image, over the 64000000 pixel cap"),
    ("not_image", r"not a decodable image"),
    ("gif", r"unsupported image format 'GIF'"),
], ids=["huge-header", "bomb", "not-image", "gif"])
def test_hostile_provider_images_never_become_masters(prefect_harness, nvidia, fast_retries, bomb_png, tmp_path,
                                                      capsys, kind, expected_reason, monkeypatch):
    from PIL import ImageFile

    decoded: list[tuple[int, int]] = []  # sizes whose pixels were decoded, in any thread of this process
    real_load = ImageFile.ImageFile.load

    def recording_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    if kind == "not_image":
        nvidia.faults.not_image = 2
    else:
        nvidia.image_override = {"huge_header": huge_header_png(), "bomb": bomb_png, "gif": gif_bytes()}[kind]
    brief = write_brief(tmp_path, f"hostile-{kind.replace('_', '-')}", provider={"name": "nvidia"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1, err
    assert [f["stage"] for f in summary["failed"]] == ["generate", "generate"]
    assert all(re.search(expected_reason, f["reason"]) for f in summary["failed"]), summary["failed"]
    assert nvidia.spent == 2, "a bad image is the provider's answer, not a transient fault: no retry"
    assert summary["published"] == 0
    assert_nothing_kept(out)
    # the refusal reads the header only: the bomb's 144 MP are never decoded (checked, not timed)
    assert not [size for size in decoded if size[0] * size[1] > 64_000_000], decoded


@pytest.mark.parametrize("content_type, body, transient", [
    ("text/html", b"<html><body>502 Bad Gateway (captive portal)</body></html>", True),
    ("image/png", grey_png(8, 8, zlib.compress(b"\0" * 72)), True),  # raw image bytes where JSON belongs
    ("application/json", b'{"artifacts": "none today"}', False),
], ids=["html", "raw-png-bytes", "json-without-image"])
def test_wrong_content_types_fail_cleanly(prefect_harness, nvidia, fast_retries, tmp_path, capsys, content_type,
                                         body, transient):
    nvidia.raw_answer, nvidia.raw_answers = (200, content_type, body), 1000
    brief, out = write_brief(tmp_path, "hostile-content-type", provider={"name": "nvidia"}), tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1, err
    assert [f["stage"] for f in summary["failed"]] == ["generate", "generate"]
    # a cut-off or garbled body on a paid call leaves open whether it ran and was billed (outcome unknown):
    # counted as spent and sent again once, never blindly three times; a well-formed answer without an
    # image is final
    assert nvidia.calls["genai"] == 2 * (2 if transient else 1)
    assert_nothing_kept(out)


# --------------------------------------------------------------------------- briefs: names and paths

def _outside_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.png"
    Image.new("RGBA", (32, 32), (255, 0, 0, 255)).save(outside)
    return outside


@pytest.mark.parametrize("case, field", [
    ("campaign ../etc", "campaign"),
    ("campaign ..", "campaign"),
    ("campaign with slash", "campaign"),
    ("campaign look-alike unicode", "campaign"),
    ("target name traversal", "targets[0].name"),
    ("size set traversal", "size_sets[0]"),
    ("logo ..", "brand.logo.path"),
    ("logo absolute", "brand.logo.path"),
    ("logo symlink out", "brand.logo.path"),
    ("base_dir smuggled in", "base_dir"),
    ("provider traversal", "provider.name"),
])
def test_traversal_and_escapes_exit_2_before_anything_is_written(nvidia, tmp_path, capsys, case, field):
    folder = tmp_path / "briefs"
    folder.mkdir()
    outside = _outside_file(tmp_path)
    overrides: dict = {}
    campaign = "escape-test"
    brand = {"name": "Acme", "palette": ["#ff6b6b"]}
    if case == "campaign ../etc":
        campaign = "../etc"
    elif case == "campaign ..":
        campaign = ".."
    elif case == "campaign with slash":
        campaign = "spring/../../launch"
    elif case == "campaign look-alike unicode":
        campaign = "spring-ｌaunch"  # fullwidth l
    elif case == "target name traversal":
        overrides["targets"] = [{"name": "../../evil", "platform": "web", "width": 64, "height": 64}]
    elif case == "size set traversal":
        overrides["size_sets"] = ["../social"]
    elif case == "logo ..":
        brand["logo"] = {"path": "../outside.png"}
    elif case == "logo absolute":
        brand["logo"] = {"path": str(outside)}
    elif case == "logo symlink out":
        (folder / "logo.png").symlink_to(outside)
        brand["logo"] = {"path": "logo.png"}
    elif case == "base_dir smuggled in":
        overrides["base_dir"] = "/"
    elif case == "provider traversal":
        overrides["provider"] = {"name": "../../nvidia"}
    brief = write_brief(folder, "brief", provider=overrides.pop("provider", {"name": "nvidia"}),
                        targets=overrides.pop("targets", None), size_sets=overrides.pop("size_sets", None),
                        brand=brand, suffix=".json", **overrides)
    data = json.loads(brief.read_text())
    data["campaign"] = campaign
    brief.write_text(json.dumps(data, ensure_ascii=False))
    out = tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 2, err
    assert field in err, err
    assert not out.exists(), "an invalid brief wrote something"
    assert sum(nvidia.calls.values()) == 0


@pytest.mark.parametrize("store, expected_code", [("../../etc", 2), ("gitlab", 1)])
def test_store_names_are_checked_before_anything_is_written(prefect_harness, tmp_path, capsys, store,
                                                            expected_code):
    """A publish store that is a traversal is an invalid brief (exit 2); a store whose credentials are
    missing is a wrong environment (exit 1: the brief is valid). Either names `publish`, before quota is
    spent or a master is written (README: "... writes nothing")."""
    brief = write_brief(tmp_path, "store-name", provider=SMALL_LOCAL, targets=SMALL_TARGET,
                        publish={"small_store": store, "large_store": "local"})
    out = tmp_path / "out"
    try:
        code, _, err = run(capsys, brief, out)
    except Exception as exc:  # noqa: BLE001 - the CLI must answer with an exit code, not a traceback
        code, err = f"raised {type(exc).__name__}: {exc}", capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert (code, written) == (expected_code, []), f"exit {code}; wrote {written}"
    assert "publish" in err


# --------------------------------------------------------------------------- briefs: long and Unicode fields

@pytest.mark.parametrize("path, value, field", [
    (("campaign",), "a" * 65, "campaign"),
    (("subjects", 0, "subject"), "x" * 10_000, "subjects[0].subject"),
    (("subjects", 0, "mood"), "calm " * 100, "subjects[0].mood"),
    (("subjects", 0, "negatives"), ["y" * 61], "subjects[0].negatives[0]"),
    (("brand", "name"), "B" * 1_000, "brand.name"),
    (("subjects", 0, "subject"), "write to jane.doe@example.com", "subjects[0].subject"),
])
def test_over_long_or_personal_fields_exit_2_naming_the_field(tmp_path, capsys, path, value, field):
    brief = write_brief(tmp_path, "long-fields", provider=SMALL_LOCAL, targets=SMALL_TARGET)
    data = yaml.safe_load(brief.read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    brief.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 2 and field in err, err
    assert not out.exists()
    assert len(err) < 2_000, "the error should name the field, not echo a 10 KB value"


def test_unicode_subjects_work_end_to_end(prefect_harness, tmp_path, capsys):
    from imagegen.imaging.encode import read_xmp

    subject = "ein Café mit Blüten 🌷 – 東京の朝, ñandú"
    brief = write_brief(tmp_path, "unicode", provider=SMALL_LOCAL, targets=SMALL_TARGET, suffix=".json",
                        subjects=[{"subject": subject, "mood": "ruhig · 静か", "seed": 5}])
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert consistency_problems(out, masters=1) == []
    rows = catalog_rows(out)
    assert all(subject in r["prompt"] for r in rows)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", r["asset_id"]) for r in rows), "asset ids must stay ASCII slugs"
    thumb = next(r for r in rows if r["variant"] == "thumb")
    assert subject in read_xmp(out / "assets" / thumb["store_key"])


def test_responsive_max_images_1_publishes_one_rendition_per_format(prefect_harness, tmp_path, capsys):
    """`publish.responsive.max_images: 1` once failed every asset with a bare KeyError."""
    brief = write_brief(tmp_path, "one-rendition", provider=SMALL_LOCAL, targets=SMALL_TARGET,
                        subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 3, "variations": 1}],
                        publish={"responsive": {"enabled": True, "formats": ["WEBP", "JPEG"], "min_width": 64,
                                                "max_width": 200, "max_images": 1}})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["failed"] == [] and summary["published"] == 1
    assert consistency_problems(out, masters=1) == []
    variants = {r["variant"] for r in catalog_rows(out)}
    renditions = sorted(v for v in variants if re.search(r"_\d+w$", v))
    assert len(renditions) == 2, variants  # one width per format


@pytest.mark.parametrize("subject, reason", [
    ("a mug\u0000with a NUL", "contains a control character (U+0000) at position 6"),
    ("a mug \u202egnp.exe", "contains a bidirectional-text control (U+202E RIGHT-TO-LEFT OVERRIDE) at position 7"),
    ("\u200b\u200b\u200b", "has no visible characters (only U+200B ZERO WIDTH SPACE)"),
], ids=["nul", "bidi-override", "only-invisible"])
def test_control_and_invisible_characters_exit_2_naming_the_field(tmp_path, capsys, subject, reason):
    """A prompt part with a control character, a bidi override or nothing visible is refused before
    anything is written (imagegen.brief: such text would reach the provider, the XMP and the catalog
    looking different from what it says, or as an empty prompt)."""
    brief = write_brief(tmp_path, "control-chars", provider=SMALL_LOCAL, targets=SMALL_TARGET, suffix=".json",
                        subjects=[{"subject": subject, "seed": 6}])
    out = tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 2, err
    assert f"subjects[0].subject: {reason}" in err
    assert not out.exists()


# --------------------------------------------------------------------------- briefs: hostile structure and values
# Each case exits 2 with one line `<field or line>: <reason>`, without a traceback, before anything is written.

def _brief_text(tmp_path: Path, suffix: str) -> str:
    return write_brief(tmp_path / "template", "hostile-brief", provider=SMALL_LOCAL, targets=SMALL_TARGET,
                       suffix=suffix).read_text()


def _yaml_with(tmp_path: Path, line: str) -> str:
    return _brief_text(tmp_path, ".yaml") + line + "\n"


def _json_with(tmp_path: Path, member: str) -> str:
    return _brief_text(tmp_path, ".json").rstrip()[:-1] + ", " + member + "}"


def _deep_yaml(tmp_path: Path, levels: int) -> str:
    return _yaml_with(tmp_path, "extra: " + "[" * levels + "]" * levels)


def _deep_json(tmp_path: Path, levels: int) -> str:
    return _json_with(tmp_path, '"extra": ' + "[" * levels + "]" * levels)


def _with_field(tmp_path: Path, suffix: str, place: tuple, field: str, written: str) -> str:
    """The template brief with `field` of the mapping at `place` written as `written` (YAML or JSON spelling)."""
    text = _brief_text(tmp_path, suffix)
    data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    node = data
    for key in place:
        node = node[key]
    node[field] = "PLACEHOLDER"
    if suffix == ".json":
        return json.dumps(data).replace('"PLACEHOLDER"', written)
    return yaml.safe_dump(data).replace("PLACEHOLDER", written)


def _subject_field(field: str, suffix: str, written: str):
    return lambda tmp: _with_field(tmp, suffix, ("subjects", 0), field, written)


def _quality_field(field: str, suffix: str, written: str):
    return lambda tmp: _with_field(tmp, suffix, ("quality",), field, written)


DEEP = "lists and mappings nested more than 32 levels deep"
HOSTILE_BRIEFS = {
    # name: (suffix, text from tmp_path, the line expected on stderr)
    "json-duplicate-key": (".json", lambda tmp: _json_with(tmp, '"campaign": "other-campaign"'),
                           r"line 1: JSON syntax error: duplicate key 'campaign' \(column \d+\)"),
    "yaml-500-levels": (".yaml", lambda tmp: _deep_yaml(tmp, 500), rf"line \d+: {DEEP} \(column \d+\)"),
    "yaml-100000-levels": (".yaml", lambda tmp: _deep_yaml(tmp, 100_000), rf"line \d+: {DEEP} \(column \d+\)"),
    "json-500-levels": (".json", lambda tmp: _deep_json(tmp, 500), rf"line 1: {DEEP} \(column \d+\)"),
    "json-100000-levels": (".json", lambda tmp: _deep_json(tmp, 100_000), rf"line 1: {DEEP} \(column \d+\)"),
    "yaml-boolean-variations": (".yaml", _subject_field("variations", ".yaml", "true"),
                                r"subjects\[0\]\.variations: expected a whole number, got true/false"),
    "yaml-yes-seed": (".yaml", _subject_field("seed", ".yaml", "yes"),
                      r"subjects\[0\]\.seed: expected a whole number, got true/false"),
    "json-boolean-threshold": (".json", _quality_field("max_noise_sigma", ".json", "false"),
                               r"quality\.max_noise_sigma: expected a number, got true/false"),
    "yaml-nan": (".yaml", _quality_field("max_noise_sigma", ".yaml", ".nan"),
                 r"quality\.max_noise_sigma: must be a finite number, not NaN or infinity"),
    "yaml-inf": (".yaml", _quality_field("max_clipped_fraction", ".yaml", ".inf"),
                 r"quality\.max_clipped_fraction: must be a finite number, not NaN or infinity"),
    "json-nan": (".json", _quality_field("max_noise_sigma", ".json", "NaN"),
                 r"quality\.max_noise_sigma: must be a finite number, not NaN or infinity"),
    "json-minus-infinity": (".json", _subject_field("variations", ".json", "-Infinity"),
                            r"subjects\[0\]\.variations: must be a finite number, not NaN or infinity"),
}


@pytest.mark.parametrize("case", HOSTILE_BRIEFS)
def test_hostile_brief_structure_and_values_exit_2_naming_the_place(tmp_path, capsys, case):
    suffix, text, expected = HOSTILE_BRIEFS[case]
    brief = tmp_path / f"brief{suffix}"
    brief.write_text(text(tmp_path))
    out = tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 2, err
    assert re.search(rf"^  {expected}$", err, re.MULTILINE), err
    assert len(err.strip().splitlines()) == 2, "the heading and one line for the one problem"
    assert "Traceback" not in err
    assert not out.exists(), "an invalid brief wrote something"


def test_an_oversized_brief_file_exits_2_before_it_is_parsed(tmp_path, capsys):
    from imagegen.brief_source import MAX_BRIEF_BYTES

    brief = tmp_path / "brief.yaml"
    brief.write_text(_brief_text(tmp_path, ".yaml") + "# padding\n" * (MAX_BRIEF_BYTES // 10))
    out = tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 2, err
    assert f"  file: the brief is over {MAX_BRIEF_BYTES} bytes" in err
    assert "Traceback" not in err
    assert not out.exists(), "an invalid brief wrote something"
