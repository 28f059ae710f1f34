"""Output targets and the built-in social-media size sets.

A target is one file a campaign publishes per asset: a platform, an exact pixel size, a format
and a byte budget. A size set is a named list of targets; a brief picks size sets by name and may
add (or override) targets of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagegen.models import FORMAT_EXTENSIONS, ImageFormat

# Platforms a target may name. "twitter" is accepted as an alias of "x".
PLATFORMS: tuple[str, ...] = (
    "instagram", "facebook", "x", "linkedin", "pinterest", "youtube", "tiktok", "web", "email", "print",
)
_PLATFORM_ALIASES = {"twitter": "x"}

# Byte budget per platform when a target does not set one. These are delivery budgets (feeds load
# fast, pages stay light), well under the platforms' own upload limits; YouTube's thumbnail limit is
# 2 MB, so its budget is that limit. Print has no budget.
PLATFORM_MAX_BYTES: dict[str, int | None] = {
    "instagram": 1_000_000,
    "facebook": 1_000_000,
    "x": 1_000_000,
    "linkedin": 1_000_000,
    "pinterest": 1_000_000,
    "tiktok": 1_000_000,
    "youtube": 2_000_000,
    "web": 500_000,
    "email": 200_000,
    "print": None,
}

_FORMAT_ALIASES = {"JPG": "JPEG"}
# Target names become file names in the stores (<campaign>/<asset>/<target>.<ext>) and catalog variants.
_TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Variant names the pipeline gives files of its own, which no target may take: the full-resolution
# master, and the responsive renditions (publish.responsive), `web_<format>_<width>w`.
MASTER_VARIANT = "master"
CUTOUT_VARIANT = "cutout"  # the full-resolution cut-out of publish.background remove/#rrggbb
RENDITION_NAME = re.compile(r"^web_(?:" + "|".join(f.lower() for f in FORMAT_EXTENSIONS) + r")_[0-9]+w$")


def rendition_name(fmt: str, width: int) -> str:
    """The variant name of a responsive rendition: `web_jpeg_640w`."""
    return f"web_{fmt.lower()}_{width}w"


def reserved_name_problem(name: str) -> str | None:
    """Why a target may not be called `name` (a file of the pipeline's own has it), or None."""
    if name == MASTER_VARIANT:
        return (f"{name!r} collides with the master variant (every asset publishes its full-resolution "
                f"master as {MASTER_VARIANT!r}); pick another name")
    if name == CUTOUT_VARIANT:
        return (f"{name!r} collides with the full-resolution cut-out (publish.background publishes it as "
                f"{CUTOUT_VARIANT!r}); pick another name")
    if RENDITION_NAME.match(name):
        return (f"{name!r} collides with the responsive renditions (publish.responsive names them "
                "web_<format>_<width>w); pick another name")
    return None

MIN_SIDE = 16
MAX_SIDE = 8192


class Target(BaseModel):
    """One output file per asset: `instagram_portrait` is 1080x1350 JPEG under 1 MB.

    Leaving `max_bytes` out gives the platform's default budget; `max_bytes: null` means no budget.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(description="Slug, unique within a brief, e.g. instagram_portrait")
    platform: str = Field(description="One of " + ", ".join(PLATFORMS))
    width: int = Field(ge=MIN_SIDE, le=MAX_SIDE)
    height: int = Field(ge=MIN_SIDE, le=MAX_SIDE)
    format: ImageFormat = "JPEG"
    max_bytes: int | None = Field(None, ge=1024, description="Largest acceptable file; None: no limit")

    @model_validator(mode="before")
    @classmethod
    def _default_byte_budget(cls, data: Any) -> Any:
        # Only an absent key gets the platform default: an explicit null must stay "no limit".
        if isinstance(data, dict) and "max_bytes" not in data and isinstance(data.get("platform"), str):
            platform = _normalise_platform(data["platform"])
            return {**data, "max_bytes": PLATFORM_MAX_BYTES.get(platform)}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TARGET_NAME.match(value):
            raise ValueError(f"not a target name: {value!r}; use lowercase letters, digits, '_' or '-' "
                             "(at most 64, starting with a letter or digit)")
        if problem := reserved_name_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("platform")
    @classmethod
    def _check_platform(cls, value: str) -> str:
        platform = _normalise_platform(value)
        if platform not in PLATFORMS:
            raise ValueError(f"unknown platform {value!r}; known: {', '.join(PLATFORMS)}")
        return platform

    @field_validator("format", mode="before")
    @classmethod
    def _check_format(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        fmt = _FORMAT_ALIASES.get(value.strip().upper(), value.strip().upper())
        if fmt not in FORMAT_EXTENSIONS:
            raise ValueError(f"unknown format {value!r}; use one of {', '.join(FORMAT_EXTENSIONS)}")
        return fmt

    @property
    def aspect(self) -> float:
        """Width divided by height (1.0 square, <1 portrait, >1 landscape)."""
        return self.width / self.height

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]


def _normalise_platform(value: str) -> str:
    platform = value.strip().lower()
    return _PLATFORM_ALIASES.get(platform, platform)


def _target(name: str, platform: str, width: int, height: int) -> Target:
    return Target(name=name, platform=platform, width=width, height=height)


_INSTAGRAM = [
    _target("instagram_square", "instagram", 1080, 1080),
    _target("instagram_portrait", "instagram", 1080, 1350),
    _target("instagram_story", "instagram", 1080, 1920),
]
_FACEBOOK = [
    _target("facebook_link", "facebook", 1200, 630),
    _target("facebook_feed", "facebook", 1080, 1080),
]
_X = [_target("x_post", "x", 1600, 900)]
_LINKEDIN = [_target("linkedin_post", "linkedin", 1200, 627)]
_PINTEREST = [_target("pinterest_pin", "pinterest", 1000, 1500)]
_YOUTUBE = [_target("youtube_thumbnail", "youtube", 1280, 720)]
# The seed's thumbnails, as targets: the same content-aware crop keeps the subject in a small square.
_THUMBNAILS = [_target("thumbnail_small", "web", 150, 150), _target("thumbnail_medium", "web", 300, 300)]

# Named size sets a brief can ask for. Targets are frozen, so sharing them between sets is safe.
BUILTIN_SIZE_SETS: dict[str, list[Target]] = {
    "instagram": _INSTAGRAM,
    "facebook": _FACEBOOK,
    "x": _X,
    "linkedin": _LINKEDIN,
    "pinterest": _PINTEREST,
    "youtube": _YOUTUBE,
    "social": _INSTAGRAM + _FACEBOOK + _X + _LINKEDIN + _PINTEREST + _YOUTUBE,
    "social_weekly": _INSTAGRAM + _FACEBOOK,
    "thumbnails": _THUMBNAILS,
}

# The same names as a type, so a deployment's "Custom run" form offers them as a choice (a test keeps the two equal).
BuiltinSizeSet = Literal["instagram", "facebook", "x", "linkedin", "pinterest", "youtube", "social", "social_weekly",
                         "thumbnails"]


def unknown_size_set_reason(name: str) -> str:
    return f"unknown size set {name!r}; known: {', '.join(sorted(BUILTIN_SIZE_SETS))}"


def resolve_targets(size_sets: Sequence[str], targets: list[Target]) -> list[Target]:
    """Every target to render: the size sets' targets in order, then the explicit ones.

    Names are unique in the result: a target named in several sets appears once, and an explicit
    target replaces a built-in one of the same name in place. Raises ValueError for an unknown set.
    """
    by_name: dict[str, Target] = {}
    for set_name in size_sets:
        if set_name not in BUILTIN_SIZE_SETS:
            raise ValueError(unknown_size_set_reason(set_name))
        for target in BUILTIN_SIZE_SETS[set_name]:
            by_name.setdefault(target.name, target)
    for target in targets:
        by_name[target.name] = target  # dicts keep the first insertion's position on reassignment
    return list(by_name.values())


def parse_ratio(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return float(width) / float(height)


def nearest_ratio(width: int, height: int, ratios: list[str]) -> str:
    """The ratio (like "16:9") closest to width/height, compared on a log scale so 2:1 and 1:2 are
    equally far from 1:1."""
    return min(ratios, key=lambda r: abs(math.log(parse_ratio(r)) - math.log(width / height)))


def aspect_groups(targets: list[Target], ratios: list[str]) -> dict[str | None, list[Target]]:
    """Targets grouped by the provider's native aspect ratio nearest each. A provider without native
    ratios gets one group (key None): every target is cut from one master."""
    if not ratios:
        return {None: list(targets)}
    groups: dict[str | None, list[Target]] = {}
    for target in targets:
        groups.setdefault(nearest_ratio(target.width, target.height, ratios), []).append(target)
    return groups


def size_for_ratio(ratio: str | None, long_side: int, *, multiple: int = 16) -> tuple[int, int]:
    """A master size of `ratio` whose longer side is `long_side`, rounded to `multiple` pixels."""
    if ratio is None:
        return long_side, long_side
    value = parse_ratio(ratio)
    short = max(multiple, round(long_side / max(value, 1 / value) / multiple) * multiple)
    return (long_side, short) if value >= 1 else (short, long_side)


# Aspect ratios a master is outpainted to: the common publishing shapes.
OUTPAINT_RATIOS = ["1:1", "4:5", "5:4", "3:4", "4:3", "2:3", "3:2", "9:16", "16:9", "1.91:1", "2:1", "3:1"]


def crop_loss(master_width: int, master_height: int, target: Target) -> float:
    """The share of the master a centre crop to `target`'s aspect cuts away (0 when they match)."""
    master, wanted = master_width / master_height, target.width / target.height
    return 1.0 - min(master / wanted, wanted / master)


def outpaint_groups(targets: list[Target], master_width: int, master_height: int, min_crop: float
                    ) -> tuple[list[Target], dict[str, list[Target]]]:
    """(targets cut from the master as it is, {ratio: targets cut from the master outpainted to ratio}).

    A target whose crop would cut away more than `min_crop` of the master gets a master extended to
    the common ratio nearest its own, so a 16:9 banner from a square master shows the whole subject.
    """
    kept: list[Target] = []
    extended: dict[str, list[Target]] = {}
    for target in targets:
        if crop_loss(master_width, master_height, target) <= min_crop:
            kept.append(target)
        else:
            extended.setdefault(nearest_ratio(target.width, target.height, OUTPAINT_RATIOS), []).append(target)
    return kept, extended
