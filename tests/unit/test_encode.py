"""Published-file encoder: right format, XMP provenance readable back, byte budgets, determinism."""

from __future__ import annotations

import pytest
from PIL import Image, features

from imagegen.imaging import encode as encode_module
from imagegen.imaging.codec import MAX_ENCODES
from imagegen.imaging.encode import (
    DIGITAL_SOURCE_TYPES,
    build_xmp,
    encode_image,
    read_xmp,
)
from imagegen.render.renderer import render_local

PROMPT = 'A luxury watch & "bold" <minimal> style'
FORMATS = ["PNG", "JPEG", "WEBP"] + (["AVIF"] if features.check("avif") else [])
MAGIC = {
    "PNG": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "JPEG": lambda b: b.startswith(b"\xff\xd8\xff"),
    "WEBP": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "AVIF": lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"avif", b"avis"),
}


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return render_local({"subject": "watch", "style": "vintage"}, 3, 480, 600)


@pytest.fixture(scope="module")
def xmp() -> bytes:
    return build_xmp(prompt=PROMPT, model="local-procedural-v1", provider="local", seed=424242, title="Hero")


def test_xmp_packet_is_well_formed_and_escaped(xmp):
    import xml.etree.ElementTree as ET

    text = xmp.decode("utf-8")
    assert text.startswith("<?xpacket begin=") and text.endswith('<?xpacket end="w"?>')
    root = ET.fromstring(text[text.index("<x:xmpmeta"):text.rindex("</x:xmpmeta>") + len("</x:xmpmeta>")])
    ns = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
          "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
          "imagegen": "https://imagegen-flows.dev/ns/1.0/"}
    desc = root.find("rdf:RDF/rdf:Description", ns)
    assert desc.find("Iptc4xmpExt:DigitalSourceType", ns).text == DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
    assert desc.find("dc:description/rdf:Alt/rdf:li", ns).text == PROMPT
    assert desc.find("imagegen:seed", ns).text == "424242"
    assert desc.find("imagegen:provider", ns).text == "local"


def test_xmp_is_deterministic_and_validates_inputs():
    kwargs = dict(prompt="p", model="m", provider="x", seed=1, extra={"campaign": "spring"})
    assert build_xmp(**kwargs) == build_xmp(**kwargs)
    composite = build_xmp(prompt="p", model="m", provider="x", seed=1,
                          source_type="compositeWithTrainedAlgorithmicMedia").decode()
    assert "digitalsourcetype/compositeWithTrainedAlgorithmicMedia" in composite
    with pytest.raises(ValueError):
        build_xmp(prompt="p", model="m", provider="x", seed=1, source_type="photo")
    with pytest.raises(ValueError):
        build_xmp(prompt="p", model="m", provider="x", seed=1, extra={"bad key": "v"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_encodes_with_readable_provenance(fmt, picture, xmp, tmp_path):
    result = encode_image(picture, tmp_path / f"out.{fmt.lower()}", fmt, xmp=xmp)
    data = (tmp_path / f"out.{fmt.lower()}").read_bytes()
    assert MAGIC[fmt](data)
    assert result.bytes == len(data) and (result.width, result.height) == picture.size
    assert result.format == fmt and result.within_budget
    with Image.open(result.path) as im:
        assert im.format == fmt and im.size == picture.size
    text = read_xmp(result.path)
    assert text is not None
    assert "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia" in text
    assert "A luxury watch &amp; \"bold\" &lt;minimal&gt; style" in text
    assert "<imagegen:seed>424242</imagegen:seed>" in text


def test_png_carries_xmp_in_an_itxt_chunk(picture, xmp, tmp_path):
    path = tmp_path / "m.png"
    encode_image(picture, path, "PNG", xmp=xmp)
    data = path.read_bytes()
    assert b"iTXtXML:com.adobe.xmp\x00\x00\x00" in data  # keyword, uncompressed, no language tags


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_deterministic(fmt, picture, xmp, tmp_path):
    a = encode_image(picture, tmp_path / "a", fmt, xmp=xmp)
    b = encode_image(picture.copy(), tmp_path / "b", fmt, xmp=xmp)
    assert a.sha256 == b.sha256
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "PNG"])
def test_byte_budget_is_met_by_bisecting_quality(fmt, picture, xmp, tmp_path, monkeypatch):
    default = encode_image(picture, tmp_path / "d", fmt, xmp=xmp)
    budget = int(default.bytes * 0.6)

    calls = []
    real_encode_bytes = encode_module.encode_bytes

    def counting_encode_bytes(img, fmt, quality=None, **kwargs):
        calls.append(quality)
        return real_encode_bytes(img, fmt, quality, **kwargs)

    monkeypatch.setattr(encode_module, "encode_bytes", counting_encode_bytes)
    result = encode_image(picture, tmp_path / "b", fmt, xmp=xmp, max_bytes=budget)
    assert result.within_budget and result.bytes <= budget
    assert result.quality < default.quality
    assert len(calls) == result.attempts <= MAX_ENCODES
    # the answer is the best quality tried that fits: one step up was over budget or not tried
    over = [q for q in calls if q > result.quality]
    assert over, "bisection must have tried something higher than the answer"


def test_impossible_budget_is_reported_not_raised(picture, xmp, tmp_path):
    result = encode_image(picture, tmp_path / "x.jpg", "JPEG", xmp=xmp, max_bytes=500)
    assert not result.within_budget and result.attempts <= MAX_ENCODES
    assert (tmp_path / "x.jpg").stat().st_size == result.bytes


def test_png_over_budget_falls_back_to_a_palette(picture, xmp, tmp_path):
    full = encode_image(picture, tmp_path / "full.png", "PNG", xmp=xmp)
    result = encode_image(picture, tmp_path / "small.png", "PNG", xmp=xmp, max_bytes=full.bytes // 2)
    assert result.palette and result.bytes < full.bytes
    with Image.open(result.path) as im:
        assert im.mode == "P"
    assert "trainedAlgorithmicMedia" in read_xmp(result.path)


def test_write_is_atomic_and_leaves_no_temp_files(picture, xmp, tmp_path):
    encode_image(picture, tmp_path / "sub" / "v.webp", "WEBP", xmp=xmp)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["v.webp"]


def test_rgba_to_jpeg_is_flattened(xmp, tmp_path):
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    result = encode_image(img, tmp_path / "t.jpg", "JPEG", xmp=xmp)
    with Image.open(result.path) as im:
        assert im.mode == "RGB" and im.getpixel((32, 32))[1] > 240  # transparent became white


def test_unknown_format_is_refused(picture, xmp, tmp_path):
    with pytest.raises(ValueError, match="unsupported output format"):
        encode_image(picture, tmp_path / "x.gif", "GIF", xmp=xmp)


def test_read_xmp_is_none_without_a_packet(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_xmp(path) is None


# --------------------------------------------------------------------------- publishing's size sets


def test_identical_targets_are_rendered_once_and_copied(picture, xmp, tmp_path, monkeypatch):
    """Targets differing only by name (instagram_square, facebook_feed) get the same file, encoded once."""
    from imagegen import publishing
    from imagegen.models import ImageRef
    from imagegen.sizes import Target

    master = tmp_path / "master.png"
    picture.save(master)
    calls = []
    real_encode = encode_module.encode_image
    monkeypatch.setattr(encode_module, "encode_image", lambda *a, **k: calls.append(a[2]) or real_encode(*a, **k))
    targets = [Target(name="square_a", platform="instagram", width=200, height=200),
               Target(name="square_b", platform="facebook", width=200, height=200),
               Target(name="wide", platform="x", width=300, height=150)]
    out = publishing.render_variants(ImageRef.from_file(master), targets, xmp=xmp, work_dir=tmp_path / "out",
                                     include_master=False)
    assert [v.variant for v in out] == ["square_a", "square_b", "wide"] and len(calls) == 2
    a, b = out[0], out[1]
    assert (b.platform, b.width, b.height, b.bytes, b.quality) == ("facebook", 200, 200, a.bytes, a.quality)
    assert b.path.endswith("square_b.jpg") and open(a.path, "rb").read() == open(b.path, "rb").read()
    assert "trainedAlgorithmicMedia" in read_xmp(b.path)
