"""Optional C2PA Content Credentials: sign a published JPEG/PNG/WebP/AVIF, read a manifest back.

The XMP packet (encode.build_xmp) says "AI-generated" but anyone can edit it. A C2PA manifest
is signed: a ``c2pa.actions`` assertion records that the image was created by a trained model
(``c2pa.created`` with IPTC digitalSourceType ``trainedAlgorithmicMedia``) and, for altered
images, a ``c2pa.edited`` action with ``compositeWithTrainedAlgorithmicMedia``; the claim
signature covers these and a hash of the pixels, so any later change reads as Invalid.

Signing needs a certificate chain (leaf first, PEM) and its private key, configured by the
operator; nothing here creates or fetches keys. No network is used: no timestamp authority
unless one is configured, no OCSP, no remote manifests. c2pa-python (native c2pa-rs) is
imported lazily, so the pipeline runs without it when signing is not configured.

Signed files are NOT byte-identical across runs (the claim carries a random instance id and
ECDSA signatures are randomised): sign after any content-addressed dedupe, never before.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretBytes

from imagegen.errors import ImagegenError
from imagegen.files import write_atomically
from imagegen.imaging.encode import DIGITAL_SOURCE_TYPES
from imagegen.redaction import mask_url_fields

SigningAlgorithm = Literal["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "ED25519"]
SIGNABLE_MIME_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                                       "AVIF": "image/avif"}
CLAIM_GENERATOR = "imagegen-flows"
# Reading never goes to the network: remote manifests and OCSP stay off.
_OFFLINE_VERIFY = {"remote_manifest_fetch": False, "ocsp_fetch": False}


class C2paSigningConfig(BaseModel):
    """The operator's signing identity. The key is a SecretBytes so it never shows in logs."""

    model_config = ConfigDict(frozen=True)

    certificate_chain_pem: bytes = Field(repr=False, description="Leaf certificate first, then intermediates")
    private_key_pem: SecretBytes
    algorithm: SigningAlgorithm = "ES256"
    timestamp_url: str | None = Field(None, description="RFC 3161 TSA; None signs without a timestamp")
    claim_generator_version: str = "0.1.0"
    embed_thumbnail: bool = Field(False, description="c2pa-rs adds a JPEG thumbnail (~20 KB) when True")

    @classmethod
    def from_files(cls, certificate_chain: str | Path, private_key: str | Path, **options: Any) -> C2paSigningConfig:
        return cls(certificate_chain_pem=Path(certificate_chain).read_bytes(),
                   private_key_pem=SecretBytes(Path(private_key).read_bytes()), **options)


class ManifestSummary(BaseModel):
    """What a reader needs from the active manifest."""

    validation_state: str  # "Trusted", "Valid" (signature good, signer not in the trust list) or "Invalid"
    title: str | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    digital_source_types: list[str] = Field(default_factory=list)
    signer: str | None = None
    issuer: str | None = None
    problems: list[str] = Field(default_factory=list,
                                description="validation_status codes, e.g. signingCredential.untrusted")


def c2pa_available() -> bool:
    """True when c2pa-python and its native library load on this machine."""
    try:
        import c2pa

        c2pa.sdk_version()
    except Exception:  # noqa: BLE001 - ImportError, OSError from the native library, ...
        return False
    return True


def mime_type(fmt: str) -> str:
    fmt = {"JPG": "JPEG"}.get(fmt.strip().upper(), fmt.strip().upper())
    if fmt not in SIGNABLE_MIME_TYPES:
        raise ValueError(f"C2PA signing supports {', '.join(SIGNABLE_MIME_TYPES)}, not {fmt!r}")
    return SIGNABLE_MIME_TYPES[fmt]


def build_manifest(*, title: str, fmt: str, edits: Sequence[str] = (), model: str | None = None,
                   claim_generator_version: str = "0.1.0") -> dict[str, Any]:
    """The manifest definition: created by a trained model, then one ``c2pa.edited`` per edit.

    `edits` describe alterations after generation (inpainting, logo overlay, colour grade); any
    edit makes the result a composite, so those actions carry compositeWithTrainedAlgorithmicMedia.
    """
    created: dict[str, Any] = {"action": "c2pa.created",
                               "digitalSourceType": DIGITAL_SOURCE_TYPES["trainedAlgorithmicMedia"]}
    if model:
        created["softwareAgent"] = {"name": model}
    actions = [created] + [
        {"action": "c2pa.edited", "description": description,
         "digitalSourceType": DIGITAL_SOURCE_TYPES["compositeWithTrainedAlgorithmicMedia"]}
        for description in edits
    ]
    return {
        "claim_generator_info": [{"name": CLAIM_GENERATOR, "version": claim_generator_version}],
        "title": title,
        "format": mime_type(fmt),
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
    }


def sign_image(data: bytes, fmt: str, config: C2paSigningConfig, manifest: dict[str, Any]) -> bytes:
    """`data` (an encoded JPEG, PNG, WebP or AVIF) with the signed manifest embedded. Raises c2pa.C2paError
    for a bad certificate/key pair or an unsupported file."""
    import c2pa

    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg[config.algorithm], config.certificate_chain_pem,
                               config.private_key_pem.get_secret_value(), config.timestamp_url)
    settings = {"builder": {"thumbnail": {"enabled": config.embed_thumbnail}}, "verify": _OFFLINE_VERIFY}
    context = c2pa.Context(c2pa.Settings.from_dict(settings))
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest), context=context) as builder:
        builder.sign(signer, mime_type(fmt), io.BytesIO(data), out)
    return out.getvalue()


def read_manifest(data: bytes, fmt: str, trust_anchors_pem: bytes | None = None) -> ManifestSummary | None:
    """The active manifest of `data`, validated; None when the file carries no C2PA data.

    With `trust_anchors_pem`, a chain up to one of those roots reads as "Trusted"; without, a
    good signature from an unknown signer reads as "Valid" with signingCredential.untrusted.
    """
    import c2pa

    settings: dict[str, Any] = {"verify": dict(_OFFLINE_VERIFY, verify_trust=True)}
    if trust_anchors_pem is not None:
        settings["trust"] = {"trust_anchors": trust_anchors_pem.decode("ascii")}
    context = c2pa.Context(c2pa.Settings.from_dict(settings))
    reader = c2pa.Reader.try_create(mime_type(fmt), io.BytesIO(data), context=context)
    if reader is None:
        return None
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state() or "Invalid"
    return _summary(store, state)


def _summary(store: dict[str, Any], state: str) -> ManifestSummary:
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    actions: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
    signature = manifest.get("signature_info", {})
    return ManifestSummary(
        validation_state=state, title=manifest.get("title"), actions=actions,
        digital_source_types=[a["digitalSourceType"] for a in actions if "digitalSourceType" in a],
        signer=signature.get("common_name"), issuer=signature.get("issuer"),
        problems=[s.get("code", "") for s in store.get("validation_status", []) or []])


# ------------------------------------------------------------------------------------ in the pipeline

class SigningFiles(BaseModel):
    """Where the operator's signing identity lives: paths only, so it can be a task argument
    (Prefect may record arguments; the key's bytes are read inside the task)."""

    model_config = ConfigDict(frozen=True)

    certificate_chain: str
    private_key: str
    algorithm: SigningAlgorithm = "ES256"
    timestamp_url: str | None = None

    def __repr_args__(self) -> Any:  # Prefect records task arguments: the time-stamp URL may hold a token
        return mask_url_fields(super().__repr_args__())

    def load(self) -> C2paSigningConfig:
        return C2paSigningConfig.from_files(self.certificate_chain, self.private_key, algorithm=self.algorithm,
                                             timestamp_url=self.timestamp_url)

    def fingerprint(self) -> str:
        """Names the identity (certificate chain and algorithm; never the key) in cache keys."""
        chain = Path(self.certificate_chain).read_bytes()
        return hashlib.sha256(chain + self.algorithm.encode()).hexdigest()


class SigningConfigError(ImagegenError):
    """The configured signing identity cannot sign: names the setting, never the key."""


def signing_from_settings(cert: Path | None, key: Path | None, algorithm: str = "ES256",
                          timestamp_url: str | None = None) -> SigningFiles | None:
    """The checked signing identity, or None when signing is not configured (both unset)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing = "IMAGEGEN_C2PA_CERT" if cert is None else "IMAGEGEN_C2PA_KEY"
        raise SigningConfigError(f"{missing}: C2PA signing needs both IMAGEGEN_C2PA_CERT and IMAGEGEN_C2PA_KEY")
    if algorithm not in get_args(SigningAlgorithm):
        raise SigningConfigError(f"IMAGEGEN_C2PA_ALGORITHM: {algorithm!r} is not one of "
                                 f"{', '.join(get_args(SigningAlgorithm))}")
    files = SigningFiles(certificate_chain=str(cert), private_key=str(key), algorithm=algorithm,
                         timestamp_url=timestamp_url)
    check_signer(files)
    return files


def check_signer(files: SigningFiles) -> None:
    """Sign a tiny image once, so a broken certificate/key pair stops a run before any spend.
    Raises SigningConfigError naming the settings, never their contents."""
    where = "IMAGEGEN_C2PA_CERT / IMAGEGEN_C2PA_KEY"
    for name, path in (("IMAGEGEN_C2PA_CERT", files.certificate_chain), ("IMAGEGEN_C2PA_KEY", files.private_key)):
        if not Path(path).is_file():
            raise SigningConfigError(f"{name}: {path} is not a readable file")
    if not c2pa_available():
        raise SigningConfigError(f"{where}: signing is configured but c2pa-python does not load on this machine")
    probe = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (16, 16), "white").save(probe, "PNG")
    try:
        sign_image(probe.getvalue(), "PNG", files.load(), build_manifest(title="probe", fmt="PNG"))
    except Exception as exc:  # noqa: BLE001 - C2paError subclasses, ValueError from a bad PEM
        raise SigningConfigError(f"{where}: the certificate and key do not make a C2PA signer "
                         f"({type(exc).__name__}; check the chain is leaf first and matches the key, "
                         f"and the algorithm {files.algorithm})") from None


def sign_file(path: Path, fmt: str, files: SigningFiles, manifest: dict[str, Any], cache_dir: Path
              ) -> tuple[int, str]:
    """Embed a signed manifest in the file at `path`; return (bytes now, sha256 before signing).

    Signing is not deterministic (random claim ids, randomised ECDSA), so the signed bytes are kept
    in `cache_dir` under the unsigned bytes' hash, the manifest and the signer: a rerun that renders
    the same pixels reuses them and the stores see the same file, not a changed one.
    """
    data = path.read_bytes()
    unsigned = hashlib.sha256(data).hexdigest()
    key = hashlib.sha256(json.dumps([unsigned, manifest, files.fingerprint()], sort_keys=True).encode()).hexdigest()
    cached = cache_dir / f"{key}{path.suffix}"
    if cached.is_file():
        signed = cached.read_bytes()
    else:
        signed = sign_image(data, fmt, files.load(), manifest)
        write_atomically(cached, signed)
    write_atomically(path, signed)
    return len(signed), unsigned
