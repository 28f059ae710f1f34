"""Which formats to deliver for a target: AVIF/WebP with a JPEG or PNG fallback on the web, one
JPEG/PNG for email and social uploads, lossless PNG for print; PNG wherever there is alpha or flat art."""

from __future__ import annotations

from PIL import Image
from pydantic import BaseModel, ConfigDict

from imagegen.imaging.codec import has_transparency, normalise_format
from imagegen.sizes import Target

SOCIAL_PLATFORMS = frozenset({"instagram", "facebook", "x", "linkedin", "pinterest", "youtube", "tiktok"})


class FormatPlan(BaseModel):
    """Formats to produce for a target, in delivery preference order; the last is the fallback."""

    model_config = ConfigDict(frozen=True)

    formats: tuple[str, ...]
    reason: str

    @property
    def fallback(self) -> str:
        return self.formats[-1]


def is_flat_graphic(img: Image.Image, top_colours: int = 32, coverage: float = 0.9) -> bool:
    """True for logo/illustration-like images: `top_colours` colours cover `coverage` of pixels.

    Sampled at <= 256 px with NEAREST so no resampling invents in-between colours. Photos and
    renders with grain have thousands of colours and fail this; flat art passes even with
    anti-aliased edges.
    """
    small = img.convert("RGB")
    scale = 256 / max(small.size)
    if scale < 1:
        small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))),
                             Image.Resampling.NEAREST)
    # never None: maxcolors is the pixel count
    counts = sorted((c for c, _ in small.getcolors(maxcolors=small.width * small.height) or []), reverse=True)
    return sum(counts[:top_colours]) >= coverage * small.width * small.height


def format_policy(platform: str, *, has_alpha: bool = False, flat_graphic: bool = False) -> FormatPlan:
    """Formats to produce for a platform, best first; the last one is what every client opens.

    web: AVIF then WebP in <picture>, JPEG fallback (PNG when there is alpha or flat art);
    email: one JPEG/PNG (Outlook and many webmail clients show neither AVIF nor WebP);
    social: JPEG/PNG, the upload formats every platform accepts (they re-encode anyway);
    print: lossless PNG.
    """
    lossless_fallback = has_alpha or flat_graphic
    why = "transparency" if has_alpha else "flat graphic" if flat_graphic else "photographic"
    if platform == "web":
        fallback = "PNG" if lossless_fallback else "JPEG"
        return FormatPlan(formats=("AVIF", "WEBP", fallback), reason=f"web {why}: AVIF, WebP, {fallback} fallback")
    if platform == "print":
        return FormatPlan(formats=("PNG",), reason="print: lossless")
    single = "PNG" if lossless_fallback else "JPEG"
    audience = "email clients" if platform == "email" else "social upload" if platform in SOCIAL_PLATFORMS else platform
    return FormatPlan(formats=(single,), reason=f"{audience} {why}: {single} only")


def format_plan_for_target(target: Target, img: Image.Image) -> FormatPlan:
    """The brief's explicit format wins; otherwise `format_policy` on the image's content."""
    if "format" in target.model_fields_set:
        return FormatPlan(formats=(normalise_format(target.format),), reason="format set by the brief")
    return format_policy(target.platform, has_alpha=has_transparency(img), flat_graphic=is_flat_graphic(img))
