"""neuroflash API data: the answers' types and lenient parsers, aspect ratios, image sniffing, quota words.

Only part of each answer is documented, so every parser tolerates extra and missing fields.
UNCONFIRMED parts of the API and what the parsers do about them:
- history fields beyond `output_image_url`/`output_image_id` and history pagination: extra and
  missing fields are tolerated; only the first page answered by GET /history is searched.
- the /edit answer shape: accepted as the generate shape `{"images": [...]}`, a history-style item
  (`output_image_url`, `output_image_id`), a list of either, or either wrapped in `data`/`item`/`image`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from imagegen.errors import ProviderError, ProviderRequestInvalid
from imagegen.models import FORMAT_CONTENT_TYPES
from imagegen.providers.http import redact
from imagegen.redaction import url_location

PROVIDER = "neuroflash"
MAX_ERROR_DETAIL_CHARS = 300

_RATE_LIMIT_WORDS = re.compile(r"rate[\s_-]?limit(ed|ing)?|too many requests", re.IGNORECASE)
_QUOTA_WORDS = re.compile(r"quota|credit|limit|exhaust|fair[\s_-]?use|insufficient|usage", re.IGNORECASE)

# Content type -> Pillow format name, to compare what a server says it sent with what it sent.
_CONTENT_TYPE_FORMATS: dict[str, str] = {ct: fmt for fmt, ct in FORMAT_CONTENT_TYPES.items()}
_CONTENT_TYPE_FORMATS["image/jpg"] = "JPEG"


# --------------------------------------------------------------------------------------------
# API data models: lenient parsers, since only part of each answer is documented.


class Quota(BaseModel):
    """One entry of GET /usage-service/v1/workspaces/{id}/quotas (`data[0]`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str | None = None
    workspace_id: str | None = None
    usage_type_key: str | None = None
    bonus_amount: int | None = None
    spillover_amount: int | None = None
    used_amount: int | None = None
    used_amount_daily: int | None = None
    available_amount: int | None = None
    limit_amount: int | None = None
    limit_amount_daily: int | None = None
    fair_use_limit_reached: bool = False

    @field_validator("fair_use_limit_reached", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    def daily_left(self) -> int | None:
        """Images left today under the daily limit, or None when there is no daily limit."""
        if self.limit_amount_daily is None:
            return None
        return self.limit_amount_daily - (self.used_amount_daily or 0)

    def total_left(self) -> int | None:
        """Images left in total: availableAmount, else limitAmount - usedAmount, else unknown."""
        if self.available_amount is not None:
            return self.available_amount
        if self.limit_amount is not None:
            return self.limit_amount - (self.used_amount or 0)
        return None

    def remaining(self) -> int | None:
        """Images that can still be generated now (both the daily and the total limit must have room).

        None means the answer carried no figure at all; the caller then relies on the API refusing.
        """
        if self.fair_use_limit_reached:
            return 0
        figures = [n for n in (self.total_left(), self.daily_left()) if n is not None]
        return max(0, min(figures)) if figures else None

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a run summary."""
        return {
            "remaining": self.remaining(),
            "available": self.available_amount,
            "used": self.used_amount,
            "used_daily": self.used_amount_daily,
            "limit": self.limit_amount,
            "limit_daily": self.limit_amount_daily,
            "fair_use_limit_reached": self.fair_use_limit_reached,
        }


class ImageModel(BaseModel):
    """One entry of GET /ds-prototypes/image_generation/models."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    provider: str | None = None
    description: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    max_images: int = 1
    aspect_ratios: list[str] = Field(default_factory=list)
    output_formats: list[str] = Field(default_factory=list)
    allowed: bool = True
    order: int | None = None

    @field_validator("capabilities", "aspect_ratios", "output_formats", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("allowed", mode="before")
    @classmethod
    def _null_is_allowed(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("max_images", mode="before")
    @classmethod
    def _null_is_one(cls, value: Any) -> Any:
        return 1 if value is None else value


class NeuroflashImage(BaseModel):
    """One produced image as the API describes it (generate `images[]`, or a history-style item)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    url: str = Field(validation_alias=AliasChoices("url", "output_image_url", "image_url"))
    image_id: str | None = Field(None, validation_alias=AliasChoices("image_id", "output_image_id", "imageId"))
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    file_size: int | None = None


class GenerationResult(BaseModel):
    """The answer of POST /ds-prototypes/image_generation/ (or /edit, read leniently)."""

    model_config = ConfigDict(extra="ignore")

    images: list[NeuroflashImage]
    batch_id: str | None = None
    prompt: str | None = None
    detail: Any = None


class HistoryItem(BaseModel):
    """One entry of GET /ds-prototypes/history; fields beyond the two documented ones are kept."""

    model_config = ConfigDict(extra="allow")

    output_image_url: str | None = None
    output_image_id: str | None = None
    batch_id: str | None = None


class DownloadedImage(BaseModel):
    """Bytes fetched for a NeuroflashImage, with what the server claimed about them."""

    data: bytes
    declared_content_types: list[str]

    def __repr__(self) -> str:  # never dump image bytes into a log line
        return f"DownloadedImage({len(self.data)} bytes, declared={self.declared_content_types})"



# --------------------------------------------------------------------------------------------
# Pure helpers


def parse_aspect_ratio(text: str) -> float:
    """'16:9' -> 1.777...; ValueError for anything that is not two positive numbers."""
    left, sep, right = text.partition(":")
    if not sep:
        raise ValueError(f"aspect ratio {text!r} is not of the form W:H")
    width, height = float(left), float(right)
    if width <= 0 or height <= 0:
        raise ValueError(f"aspect ratio {text!r} must be positive")
    return width / height


def nearest_aspect_ratio(width: int, height: int, allowed: list[str]) -> str:
    """The allowed ratio closest to width:height, compared on a log scale (so 2:1 and 1:2 are
    equally far from 1:1). Ties go to the earlier entry; entries that do not parse are skipped."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    target = math.log(width / height)
    best: tuple[float, str] | None = None
    for candidate in allowed:
        try:
            distance = abs(math.log(parse_aspect_ratio(candidate)) - target)
        except ValueError:
            continue
        if best is None or distance < best[0] - 1e-12:
            best = (distance, candidate)
    if best is None:
        raise ValueError(f"no usable aspect ratio in {allowed!r}")
    return best[1]


def sniff_image_format(data: bytes) -> str | None:
    """Pillow format name from magic bytes, or None when the bytes are no image we accept."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    return None


def check_image_type(downloaded: DownloadedImage, image_id: str | None, secrets: Iterable[str | None] = ()) -> None:
    """Raise ProviderError unless the bytes are an image of the type the server declared."""
    actual = sniff_image_format(downloaded.data)
    label = f"image {image_id}" if image_id else "image"
    if actual is None:
        raise ProviderError(redact(f"neuroflash {label}: downloaded bytes are not an image "
                                   f"(declared {downloaded.declared_content_types})", secrets), provider=PROVIDER)
    for declared in downloaded.declared_content_types:
        expected = _CONTENT_TYPE_FORMATS.get(declared.split(";")[0].strip().lower())
        if declared.lower().startswith("image/") and expected != actual:
            raise ProviderError(redact(f"neuroflash {label}: declared content type {declared!r} "
                                       f"but the bytes are {actual}", secrets), provider=PROVIDER)


def relative_image_path(url: str) -> str:
    """The relative path /edit accepts ('/api/ds-prototypes/...'): a relative path is kept, an
    absolute URL is cut down to its path starting at /api/; anything else is refused, because
    the API answers an absolute URL with a 500."""
    if url.startswith("/") and not url.startswith("//"):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.path.startswith("/api/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    raise ProviderRequestInvalid(
        f"neuroflash /edit needs the relative image path from /history (e.g. /api/ds-prototypes/"
        f"image_generation/<id>/view), got {url_location(url)}", provider=PROVIDER)


def view_path(image_id: str) -> str:
    """The relative path of an image in this workspace, as history's `output_image_url` gives it and as
    /edit takes it (seed 004): /api/ds-prototypes/image_generation/{image_id}/view."""
    return f"/api/ds-prototypes/image_generation/{quote(image_id, safe='')}/view"


def find_model(models: list[ImageModel], model_id: str, secrets: Iterable[str | None] = ()) -> ImageModel:
    """The model entry, or ProviderRequestInvalid listing the usable ones."""
    for entry in models:
        if entry.id == model_id:
            return entry
    usable = [m.id for m in models if m.allowed]
    raise ProviderRequestInvalid(redact(f"neuroflash model {model_id!r} unknown; allowed values: {usable}", secrets),
                                 provider=PROVIDER)


def check_generate_request(models: list[ImageModel], model: str, aspect_ratio: str, output_format: str,
                           num_images: int = 1, secrets: Iterable[str | None] = ()) -> ImageModel:
    """The model's entry if a generate request fits it; else ProviderRequestInvalid naming the field
    and its allowed values (checked before anything is spent)."""
    entry = find_model(models, model, secrets)
    usable = [m.id for m in models if m.allowed]
    problem = None
    if not entry.allowed:
        problem = f"neuroflash model {model!r} is not allowed for this workspace; allowed values: {usable}"
    elif "text2image" not in entry.capabilities:
        problem = (f"neuroflash model {model!r} lacks capability 'text2image' (has {entry.capabilities}); models "
                   f"with it: {[m.id for m in models if m.allowed and 'text2image' in m.capabilities]}")
    elif aspect_ratio not in entry.aspect_ratios:
        problem = (f"neuroflash aspect_ratio {aspect_ratio!r} not offered by {model!r}; "
                   f"allowed values: {entry.aspect_ratios}")
    elif output_format not in entry.output_formats:
        problem = (f"neuroflash output_format {output_format!r} not offered by {model!r}; "
                   f"allowed values: {entry.output_formats}")
    elif not 1 <= num_images <= entry.max_images:
        problem = (f"neuroflash num_images {num_images} out of range for {model!r}; "
                   f"allowed values: 1..{entry.max_images}")
    if problem:
        raise ProviderRequestInvalid(redact(problem, secrets), provider=PROVIDER)
    return entry


def mentions_quota(detail: str) -> bool:
    """True when an error text is about a usage limit rather than request pacing."""
    return bool(_QUOTA_WORDS.search(_RATE_LIMIT_WORDS.sub(" ", detail)))


def quota_message(needed: int, quota: Quota) -> str:
    left = quota.remaining()
    why = " (fair-use limit reached)" if quota.fair_use_limit_reached else ""
    return (f"neuroflash: need {needed} images, {left} left today{why} "
            f"(daily limit resets at midnight UTC)")


def _has_url(item: Any) -> bool:
    return isinstance(item, dict) and any(isinstance(item.get(k), str) and item.get(k)
                                          for k in ("url", "output_image_url", "image_url"))


def parse_generation_answer(body: Any, where: str, secrets: Iterable[str | None] = ()) -> GenerationResult:
    """Read a generate-shaped or history-shaped answer into a GenerationResult (see module docstring).

    An answer without any image raises a non-transient ProviderError: the call may have spent quota.
    """
    candidates: list[Any] = [body]
    if isinstance(body, dict):
        candidates += [body.get(key) for key in ("data", "item", "result", "image") if body.get(key)]
    for candidate in candidates:
        if isinstance(candidate, dict) and isinstance(candidate.get("images"), list):
            images = [NeuroflashImage.model_validate(i) for i in candidate["images"] if _has_url(i)]
            if images:
                return GenerationResult(images=images, batch_id=candidate.get("batch_id"),
                                        prompt=candidate.get("prompt"), detail=candidate.get("detail"))
        items = candidate.get("items") if isinstance(candidate, dict) else candidate
        if isinstance(items, list) and any(_has_url(i) for i in items):
            images = [NeuroflashImage.model_validate(i) for i in items if _has_url(i)]
            first = next(i for i in items if _has_url(i))
            return GenerationResult(images=images, batch_id=first.get("batch_id"), prompt=first.get("prompt"))
        if _has_url(candidate):
            return GenerationResult(images=[NeuroflashImage.model_validate(candidate)],
                                    batch_id=candidate.get("batch_id"), prompt=candidate.get("prompt"))
    keys = sorted(body) if isinstance(body, dict) else type(body).__name__
    detail = body.get("detail") if isinstance(body, dict) else None
    said = f", detail: {str(detail)[:MAX_ERROR_DETAIL_CHARS]}" if detail else ""
    raise ProviderError(redact(f"neuroflash {where} answered without any image (keys: {keys}{said}); "
                               f"quota may be spent, not retried (see /history)", secrets), provider=PROVIDER)
