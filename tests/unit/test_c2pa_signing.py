"""C2PA signing with a throwaway CA + leaf made here (ES256), read back with c2pa's Reader."""

from __future__ import annotations

import hashlib
import io

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from imagegen.imaging import c2pa_signing as cs
from imagegen.imaging.encode import DIGITAL_SOURCE_TYPES, build_xmp, read_xmp
from tests.c2pa_pki import make_pki

AI = DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
COMPOSITE = DIGITAL_SOURCE_TYPES["compositeWithTrainedAlgorithmicMedia"]


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    return make_pki()


@pytest.fixture()
def config(pki: dict[str, bytes]) -> cs.C2paSigningConfig:
    return cs.C2paSigningConfig(certificate_chain_pem=pki["chain"], private_key_pem=pki["key"])


def _encoded(fmt: str, xmp: bytes | None = None) -> bytes:
    img = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, fmt, **({"xmp": xmp} if xmp and fmt == "JPEG" else {}))
    return buf.getvalue()


def test_c2pa_loads_here() -> None:
    assert cs.c2pa_available()


def test_signed_jpeg_reads_back_trusted_with_created_action(config, pki) -> None:
    manifest = cs.build_manifest(title="hero.jpg", fmt="JPEG", model="flux-1-dev")
    signed = cs.sign_image(_encoded("JPEG"), "JPEG", config, manifest)

    summary = cs.read_manifest(signed, "JPEG", trust_anchors_pem=pki["ca"])
    assert summary is not None
    assert summary.validation_state == "Trusted", summary.problems
    assert summary.title == "hero.jpg"
    assert [a["action"] for a in summary.actions] == ["c2pa.created"]
    assert summary.digital_source_types == [AI]
    assert summary.actions[0]["softwareAgent"]["name"] == "flux-1-dev"
    assert summary.signer == "imagegen signer" and summary.issuer == "imagegen test"
    assert Image.open(io.BytesIO(signed)).size == (96, 64)  # still a decodable JPEG


def test_untrusted_signer_is_valid_but_flagged(config) -> None:
    signed = cs.sign_image(_encoded("JPEG"), "JPEG", config, cs.build_manifest(title="a.jpg", fmt="JPEG"))
    summary = cs.read_manifest(signed, "JPEG")
    assert summary is not None and summary.validation_state == "Valid"
    assert "signingCredential.untrusted" in summary.problems


def test_edited_png_is_composite_and_keeps_pixels(config, pki) -> None:
    source = _encoded("PNG")
    manifest = cs.build_manifest(title="post.png", fmt="PNG", edits=["logo overlay", "warm grade"])
    signed = cs.sign_image(source, "PNG", config, manifest)

    summary = cs.read_manifest(signed, "PNG", trust_anchors_pem=pki["ca"])
    assert summary is not None and summary.validation_state == "Trusted"
    assert [a["action"] for a in summary.actions] == ["c2pa.created", "c2pa.edited", "c2pa.edited"]
    assert summary.digital_source_types == [AI, COMPOSITE, COMPOSITE]
    assert summary.actions[1]["description"] == "logo overlay"
    assert Image.open(io.BytesIO(signed)).tobytes() == Image.open(io.BytesIO(source)).tobytes()


def test_tampered_file_is_invalid(config, pki) -> None:
    signed = bytearray(cs.sign_image(_encoded("JPEG"), "JPEG", config, cs.build_manifest(title="t", fmt="JPEG")))
    signed[-20] ^= 0xFF  # inside the entropy-coded image data, which the data hash covers
    summary = cs.read_manifest(bytes(signed), "JPEG", trust_anchors_pem=pki["ca"])
    assert summary is not None and summary.validation_state == "Invalid"
    assert "assertion.dataHash.mismatch" in summary.problems


def test_xmp_digital_source_type_survives_signing(config, tmp_path) -> None:
    xmp = build_xmp(prompt="a watch", model="m", provider="p", seed=1)
    signed = cs.sign_image(_encoded("JPEG", xmp), "JPEG", config, cs.build_manifest(title="x", fmt="JPEG"))
    path = tmp_path / "x.jpg"
    path.write_bytes(signed)
    assert AI in (read_xmp(path) or "")


def test_unsigned_file_has_no_manifest() -> None:
    assert cs.read_manifest(_encoded("JPEG"), "JPEG") is None


def test_key_never_in_repr(config, pki) -> None:
    assert pki["key"].decode() not in repr(config)
    assert b"PRIVATE" not in repr(config).encode()


def test_wrong_key_is_refused(pki) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    bad = cs.C2paSigningConfig(certificate_chain_pem=pki["chain"], private_key_pem=other)
    import c2pa

    with pytest.raises(c2pa.C2paError):
        cs.sign_image(_encoded("JPEG"), "JPEG", bad, cs.build_manifest(title="x", fmt="JPEG"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "AVIF"])
def test_every_published_format_signs_and_verifies(fmt: str, config, pki) -> None:
    source = _encoded(fmt)
    signed = cs.sign_image(source, fmt, config, cs.build_manifest(title=f"x.{fmt.lower()}", fmt=fmt))
    summary = cs.read_manifest(signed, fmt, trust_anchors_pem=pki["ca"])
    assert summary is not None and summary.validation_state == "Trusted"
    assert summary.digital_source_types == [AI]
    with Image.open(io.BytesIO(signed)) as im:
        assert im.format == fmt and im.size == (96, 64)


def test_unsupported_format_is_refused() -> None:
    with pytest.raises(ValueError, match="GIF"):
        cs.build_manifest(title="x", fmt="GIF")


# --------------------------------------------------------------------------- in the pipeline

@pytest.fixture()
def signing_files(pki, tmp_path) -> cs.SigningFiles:
    (tmp_path / "chain.pem").write_bytes(pki["chain"])
    (tmp_path / "key.pem").write_bytes(pki["key"])
    return cs.signing_from_settings(tmp_path / "chain.pem", tmp_path / "key.pem")


def test_signing_is_off_when_neither_setting_is_given() -> None:
    assert cs.signing_from_settings(None, None) is None


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_half_a_signing_identity_names_the_missing_setting(tmp_path, missing) -> None:
    present = tmp_path / "present.pem"
    present.write_bytes(b"x")
    args = (None, present) if missing == "cert" else (present, None)
    with pytest.raises(cs.SigningConfigError, match=f"IMAGEGEN_C2PA_{missing.upper()}: C2PA signing needs both"):
        cs.signing_from_settings(*args)


def test_a_key_that_does_not_match_the_certificate_fails_without_showing_it(pki, tmp_path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "chain.pem").write_bytes(pki["chain"])
    (tmp_path / "key.pem").write_bytes(other)
    with pytest.raises(cs.SigningConfigError, match="IMAGEGEN_C2PA_CERT / IMAGEGEN_C2PA_KEY") as caught:
        cs.signing_from_settings(tmp_path / "chain.pem", tmp_path / "key.pem")
    body = other.decode().splitlines()[1]
    assert body not in str(caught.value) and caught.value.__cause__ is None


def test_an_unknown_algorithm_is_named(pki, tmp_path) -> None:
    (tmp_path / "c.pem").write_bytes(pki["chain"])
    (tmp_path / "k.pem").write_bytes(pki["key"])
    with pytest.raises(cs.SigningConfigError, match="IMAGEGEN_C2PA_ALGORITHM: 'RS1'"):
        cs.signing_from_settings(tmp_path / "c.pem", tmp_path / "k.pem", algorithm="RS1")


def test_sign_file_reuses_the_signed_bytes_for_the_same_pixels(signing_files, pki, tmp_path) -> None:
    """Signing twice differs byte for byte; the cache makes a rerun's file identical to the first."""
    data = _encoded("JPEG")
    manifest = cs.build_manifest(title="a / b / hero", fmt="JPEG", model="m")
    first, second = tmp_path / "first.jpg", tmp_path / "second.jpg"
    first.write_bytes(data)
    second.write_bytes(data)
    size, unsigned = cs.sign_file(first, "JPEG", signing_files, manifest, tmp_path / "cache")
    assert unsigned == hashlib.sha256(data).hexdigest() and size == first.stat().st_size > len(data)
    assert cs.sign_file(second, "JPEG", signing_files, manifest, tmp_path / "cache") == (size, unsigned)
    assert first.read_bytes() == second.read_bytes()
    assert cs.read_manifest(first.read_bytes(), "JPEG", pki["ca"]).validation_state == "Trusted"
    # without the cache the same pixels sign to different bytes: that is why the cache exists
    third = tmp_path / "third.jpg"
    third.write_bytes(data)
    cs.sign_file(third, "JPEG", signing_files, manifest, tmp_path / "other-cache")
    assert third.read_bytes() != first.read_bytes()
