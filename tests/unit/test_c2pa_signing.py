"""C2PA signing with a throwaway CA + leaf made here (ES256), read back with c2pa's Reader."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image

from imagegen.imaging import c2pa_signing as cs
from imagegen.imaging.encode import DIGITAL_SOURCE_TYPES, build_xmp, read_xmp

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

AI = DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]
COMPOSITE = DIGITAL_SOURCE_TYPES["compositeWithTrainedAlgorithmicMedia"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imagegen test")])


def _usage(*, sign_certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not sign_certs, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=sign_certs,
                         crl_sign=sign_certs, encipher_only=False, decipher_only=False)


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    """A CA and a leaf with the profile C2PA requires (digitalSignature, emailProtection EKU)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("imagegen test CA")).issuer_name(_name("imagegen test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(sign_certs=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("imagegen signer")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign_certs=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        "chain": leaf.public_bytes(pem) + ca.public_bytes(pem),
        "key": leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "ca": ca.public_bytes(pem),
    }


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
