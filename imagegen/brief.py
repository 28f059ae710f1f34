"""The campaign brief: what to make, in which sizes, with which provider, under which policies.

A brief is a YAML or JSON file that marketing writes by hand, so every model forbids unknown keys
(a typo is an error, not a silently ignored setting) and every failure is reported as a
`BriefError` listing (field path, reason) pairs such as ``subjects[0].subject: field required``
(worded by imagegen.brief_errors; imagegen.brief_source reads briefs from files, text and URLs, and
imagegen.brief_checks refuses what pydantic's lax mode would take, such as `true` for a number).
Prompt parts are checked for personal data, length and control or invisible characters (the rules in
imagegen.guards) as the brief is validated, before any provider sees them; so is the brand logo: a
whole PNG, JPEG or WebP file inside the brief's folder, within a byte and a pixel cap (imagegen.imaging.logo).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imagegen.brief_edits import InpaintSpec, check_style_reference
from imagegen.brief_paths import checked_brief_file, resolve_inside
from imagegen.errors import BriefError
from imagegen.guards import MAX_SEED, check_prompt_characters, find_personal_data, slugify
from imagegen.imaging.logo import DEFAULT_LOGO_SCALE, check_logo
from imagegen.models import FORMAT_EXTENSIONS
from imagegen.presets import COMPOSITION_RULES, LIGHTING_PRESETS, STYLE_KEYWORDS
from imagegen.sizes import BUILTIN_SIZE_SETS, Target, resolve_targets, unknown_size_set_reason

PROVIDER_NAMES: tuple[str, ...] = ("local", "nvidia", "nim", "neuroflash")

# allow_inf_nan=False: YAML's .nan/.inf and JSON's NaN/Infinity are refused as "must be a finite number"
# (NaN would otherwise fail every bound with a misleading "must be at most ...").
_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_CAMPAIGN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_BLOCK_REF = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$")
MAX_CAMPAIGN_CHARS = 64


def short_repr(value: Any, limit: int = 40) -> str:
    """repr() of user input, cut short: error messages end up in logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------


def _normalise_hex_colour(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not _HEX_COLOUR.match(text):
        raise ValueError(f"not a hex colour like #ff6b6b: {short_repr(value, 24)}")
    digits = text[1:].lower()
    if len(digits) == 3:
        digits = "".join(char * 2 for char in digits)
    return "#" + digits


HexColor = Annotated[str, BeforeValidator(_normalise_hex_colour)]


def _background_choice(value: Any) -> str:
    """publish.background: `keep`, `remove` or a #rrggbb (imagegen.imaging.cutout does the pixels)."""
    if value is None:  # YAML reads an unquoted `#ff0000` as a comment: nothing
        raise ValueError('expected keep, remove or #rrggbb, got nothing (quote a colour in YAML: "#1a2b3c")')
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("keep", "remove"):
        return text
    if text is not None and _HEX_COLOUR.match(text):
        return _normalise_hex_colour(text)
    raise ValueError(f"expected keep, remove or #rrggbb, got {short_repr(value)}")


def _reject_personal_data(value: str) -> str:
    kinds = find_personal_data(value)
    if kinds:
        raise ValueError(f"contains personal data ({', '.join(kinds)})")
    return value


# Text that reaches a provider: visible characters only (line breaks become spaces), length-limited and
# free of personal data. Written out as plain Annotated aliases (not built by a function) so type
# checkers accept them as types. The BeforeValidator wraps the constrained str (so it runs first, on the
# text as written) and comes after StringConstraints so pydantic keeps its string-length errors ("at most
# N characters").
_VISIBLE_TEXT = BeforeValidator(check_prompt_characters)
_NO_PERSONAL_DATA = AfterValidator(_reject_personal_data)
SubjectText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                        _VISIBLE_TEXT, _NO_PERSONAL_DATA]
MoodText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=0, max_length=120),
                     _VISIBLE_TEXT, _NO_PERSONAL_DATA]
PromptWord = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60),
                       _VISIBLE_TEXT, _NO_PERSONAL_DATA]
BrandName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
                      _VISIBLE_TEXT, _NO_PERSONAL_DATA]


def _key_of(table: dict[str, Any], what: str) -> Any:
    """A validator accepting a key of `table`, written in any case with spaces or hyphens for '_'."""

    def check(value: str) -> str:
        key = re.sub(r"[\s-]+", "_", value.strip().lower())
        if key not in table:
            raise ValueError(f"unknown {what} {short_repr(value)}; known: {', '.join(sorted(table))}")
        return key

    return AfterValidator(check)


def _check_size_set(value: str) -> str:
    name = value.strip().lower()
    if name not in BUILTIN_SIZE_SETS:
        raise ValueError(unknown_size_set_reason(value))
    return name


SizeSetName = Annotated[str, AfterValidator(_check_size_set)]


def _check_image_format(value: str) -> str:
    fmt = {"JPG": "JPEG"}.get(value.strip().upper(), value.strip().upper())
    if fmt not in FORMAT_EXTENSIONS:
        raise ValueError(f"unknown format {short_repr(value)}; use one of {', '.join(FORMAT_EXTENSIONS)}")
    return fmt


def _check_provider_name(value: str) -> str:
    name = value.strip().lower()
    if name not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {short_repr(value)}; known: {', '.join(PROVIDER_NAMES)}")
    return name


ProviderName = Annotated[str, AfterValidator(_check_provider_name)]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class LogoSpec(BaseModel):
    """The brand logo the publisher stamps on every variant (the guide's add_watermark)."""

    model_config = _STRICT

    path: str = Field(min_length=1, description="PNG, JPEG or WebP file (at most 20 MB and 16 megapixels), "
                                                "relative to the brief's folder")
    position: Literal["se", "sw", "ne", "nw", "center"] = "se"
    opacity: float = Field(0.5, ge=0.0, le=1.0)
    scale: float = Field(DEFAULT_LOGO_SCALE, ge=0.02, le=0.5, description="Logo width as a fraction of the image width")
    margin: float = Field(0.03, ge=0.0, lt=0.5, description="Gap to the edges, as a fraction of the shorter side")

    @field_validator("path")
    @classmethod
    def _stay_inside_brief_folder(cls, value: str, info: ValidationInfo) -> str:
        # With the brief's folder known (parse_brief passes it as context) the file is checked too:
        # a whole PNG, JPEG or WebP within the caps, before anything is spent (imagegen.imaging.logo).
        return checked_brief_file(value, info.context, check_logo)


class BorderSpec(BaseModel):
    """A solid frame inside every published variant (the seed's `-border 10 -bordercolor white`)."""

    model_config = _STRICT

    width: float = Field(0.02, gt=0, le=0.2, description="Share of the shorter side")
    colour: HexColor = "#ffffff"


class Brand(BaseModel):
    model_config = _STRICT

    name: BrandName
    palette: list[HexColor] = Field(min_length=1, max_length=12, description="Brand colours, primary first")
    logo: LogoSpec | None = None
    grade: Literal["warm", "cool", "vintage", "dramatic"] | None = Field(
        None, description="Colour-grading preset applied to every variant")
    border: BorderSpec | None = None


class Featured(BaseModel):
    """Someone or something the image must show by name (the seed's multi-subject generation)."""

    model_config = _STRICT

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60),
                    _VISIBLE_TEXT, _NO_PERSONAL_DATA]
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=160),
                           _VISIBLE_TEXT, _NO_PERSONAL_DATA]


def _distinct_names(featuring: list[Featured]) -> list[Featured]:
    seen: set[str] = set()
    for item in featuring:
        if item.name.casefold() in seen:
            raise ValueError(f"{item.name!r} is featured twice: each name once, with one description")
        seen.add(item.name.casefold())
    return featuring


class Subject(BaseModel):
    """One image idea. Style, lighting and composition name presets (see imagegen.presets).

    `featuring` names the subjects the image must show together; the prompt gets the seed's
    "featuring: name: description, ..." clause right after the subject, within the prompt length guard."""

    model_config = _STRICT

    subject: SubjectText
    featuring: Annotated[list[Featured], AfterValidator(_distinct_names)] = Field(default_factory=list,
                                                                                   max_length=6)
    style: Annotated[str, _key_of(STYLE_KEYWORDS, "style")] = "product"
    lighting: Annotated[str, _key_of(LIGHTING_PRESETS, "lighting")] = "product"
    composition: Annotated[str, _key_of(COMPOSITION_RULES, "composition")] = "rule_of_thirds"
    mood: MoodText = ""
    # None: the defaults from imagegen.presets; a list (even empty) replaces them.
    quality: list[PromptWord] | None = Field(None, max_length=12)
    negatives: list[PromptWord] | None = Field(None, max_length=20)
    variations: int = Field(1, ge=1, le=20)
    seed: int | None = Field(None, ge=1, le=MAX_SEED)
    # made after generation through the provider's image edit (imagegen.brief_edits)
    inpaint: InpaintSpec | None = None
    style_reference: str | None = Field(None, description="An image under the brief's folder (.png, .jpg, "
                                                          ".jpeg, .webp) or a description of the style")

    _style_reference = field_validator("style_reference")(check_style_reference)


class QualityPolicy(BaseModel):
    """Thresholds the quality gate applies to every generated image."""

    model_config = _STRICT

    min_width: int = Field(1024, ge=1)
    min_height: int = Field(1024, ge=1)
    allowed_formats: list[Annotated[str, AfterValidator(_check_image_format)]] = Field(
        default_factory=lambda: ["PNG", "JPEG", "WEBP"], min_length=1)
    min_sharpness: float = Field(35.0, ge=0)  # crisp minimal shots score ~48, 1 px blur ~21
    max_blockiness: float = Field(3.0, ge=0)  # JPEG q>=75 <= 2.3, q<=60 >= 3.4
    max_clipped_fraction: float = Field(0.05, ge=0, le=1)
    max_noise_sigma: float = Field(2.5, ge=0)  # measured at the 512 px analysis size
    max_brand_delta_e: float = Field(15.0, ge=0)  # on-brand renders ~9, off-brand ~21
    check_brand_colors: bool = True
    duplicate_max_distance: int = Field(8, ge=0, le=64)  # near copies <= 6, distinct >= 12
    max_edit_attempts: int = Field(2, ge=0, le=5)
    vlm_review: bool = False
    # Faces (imagegen.imaging.faces): None checks the masters of `style: portrait` subjects, true every
    # master, false none. Without a detected face the sharpness and exposure gates have nothing to judge.
    faces: bool | None = None
    min_faces: int = Field(0, ge=0, le=20, description="Faces a checked master must show; 0: any number")
    min_face_sharpness: float = Field(30.0, ge=0)  # sharp faces ~300, 2 px blur ~55, 4 px ~10 (at 128 px)
    min_face_luma: float = Field(70.0, ge=0, le=255)  # mean grey of the face's centre
    max_face_luma: float = Field(215.0, ge=0, le=255)

    @field_validator("max_face_luma")
    @classmethod
    def _face_luma_range(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_face_luma")  # missing when it failed validation: reported already
        if low is not None and low > value:
            raise ValueError(f"is below min_face_luma ({low:g}): no face could pass")
        return value

    def checks_faces(self, style: str | None) -> bool:
        """Whether a master of a subject with `style` has its faces detected, gated and kept whole by crops."""
        return self.faces if self.faces is not None else style == "portrait"


class ResponsivePolicy(BaseModel):
    """Responsive renditions of each master for the web: srcset widths chosen by byte steps."""

    model_config = _STRICT

    enabled: bool = False
    formats: list[Annotated[str, AfterValidator(_check_image_format)]] = Field(
        default_factory=lambda: ["AVIF", "WEBP", "JPEG"], min_length=1)
    min_width: int = Field(320, ge=16, le=8192)
    max_width: int = Field(1600, ge=16, le=8192)
    bytes_step: int = Field(20_000, ge=1000)
    max_images: int = Field(4, ge=1, le=20)
    sizes: str = Field("100vw", max_length=200, description="The <picture>'s sizes attribute")

    @model_validator(mode="after")
    def _needs_fallback(self) -> ResponsivePolicy:
        if not {"JPEG", "PNG"} & set(self.formats):
            raise ValueError("formats need JPEG or PNG as the <picture> fallback")
        if self.min_width > self.max_width:
            raise ValueError("min_width is larger than max_width")
        return self


class OutpaintPolicy(BaseModel):
    """Extend a master to a target's aspect through the provider's edit instead of cropping it."""

    model_config = _STRICT

    enabled: bool = False
    min_crop: float = Field(0.25, gt=0, lt=1, description="Outpaint when a crop would cut away more than this "
                                                          "share of the master")


class PublishPolicy(BaseModel):
    """Where published files go: under the threshold to `small_store`, at or over it to `large_store`."""

    model_config = _STRICT

    small_store: str = Field("local", min_length=1)
    large_store: str = Field("local", min_length=1)
    size_threshold_bytes: int = Field(2_000_000, ge=1)
    include_master: bool = True
    ssim_floor: float = Field(0.95, ge=0, le=1, description="A byte budget that pushes SSIM under this is reported")
    responsive: ResponsivePolicy = Field(default_factory=lambda: ResponsivePolicy())
    outpaint: OutpaintPolicy = Field(default_factory=lambda: OutpaintPolicy())
    background: Annotated[str, BeforeValidator(_background_choice)] = Field(
        "keep", description="keep, remove (a cut-out: alpha in PNG/WebP/AVIF, white in JPEG) or a #rrggbb "
                            "to put the subject on; see imagegen.imaging.cutout")


class ProviderChoice(BaseModel):
    """A provider by name (configured from the environment) or a saved Prefect block.

    In YAML, `provider: nvidia` and `provider: nvidia-provider/prod` (a block) are shorthands.
    Giving neither name nor block means `local`.
    """

    model_config = _STRICT

    name: ProviderName | None = None
    block: str | None = Field(None, description="<block-type-slug>/<block-name>")
    model: str | None = Field(None, min_length=1)
    fallback: list[ProviderName] = Field(default_factory=list, description="Providers to try, in order")
    master_width: int | None = Field(None, ge=64, le=8192)
    master_height: int | None = Field(None, ge=64, le=8192)

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, str):
            return {"block": data} if "/" in data else {"name": data}
        return data

    @field_validator("block")
    @classmethod
    def _check_block(cls, value: str | None) -> str | None:
        if value is not None and not _BLOCK_REF.match(value):
            raise ValueError(f"not a block reference like 'nvidia-provider/prod': {short_repr(value)}")
        return value

    @model_validator(mode="after")
    def _name_or_block(self) -> ProviderChoice:
        if self.name and self.block:
            raise ValueError("give either name or block, not both")
        if not self.name and not self.block:
            self.name = "local"
        return self


def _campaign_problem(value: str) -> str | None:
    why = "the campaign becomes a storage path part; use lowercase letters, digits and hyphens"
    suggestion = slugify(value)[:MAX_CAMPAIGN_CHARS]
    hint = f" (e.g. {suggestion!r})" if suggestion else ""
    if not value:
        return "must not be empty"
    if len(value) > MAX_CAMPAIGN_CHARS:
        return f"at most {MAX_CAMPAIGN_CHARS} characters (got {len(value)})"
    if ".." in value:
        return f"must not contain '..': {why}{hint}"
    if "/" in value or "\\" in value:
        return f"must not contain '/' or a backslash: {why}{hint}"
    if any(char.isspace() for char in value):
        return f"must not contain spaces: {why}{hint}"
    if not _CAMPAIGN.match(value):
        return f"{short_repr(value)} is not a slug: {why}{hint}"
    return None


class Brief(BaseModel):
    """A whole campaign. Load one with `imagegen.brief_source.load_brief(path)`."""

    model_config = _STRICT

    campaign: str = Field(description="Slug: lowercase letters, digits and hyphens; part of every storage key")
    brand: Brand
    subjects: list[Subject] = Field(min_length=1)
    size_sets: list[SizeSetName] = Field(default_factory=lambda: ["social"])
    targets: list[Target] = Field(default_factory=list, validate_default=True,
                                  description="Extra targets; one named like a built-in replaces it")
    provider: ProviderChoice = Field(default_factory=ProviderChoice)
    quality: QualityPolicy = Field(default_factory=QualityPolicy)
    publish: PublishPolicy = Field(default_factory=PublishPolicy)
    # Set by parse_brief/load_brief (a brief file may not set it): the folder relative paths start from.
    base_dir: str | None = None

    @field_validator("campaign")
    @classmethod
    def _check_campaign(cls, value: str) -> str:
        problem = _campaign_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, targets: list[Target], info: ValidationInfo) -> list[Target]:
        names = [target.name for target in targets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate target name(s): {', '.join(duplicates)}")
        # size_sets is missing from info.data when it failed validation: that error is reported already.
        if "size_sets" in info.data and not info.data["size_sets"] and not targets:
            raise ValueError("no output sizes: size_sets and targets are both empty")
        return targets

    @property
    def all_targets(self) -> list[Target]:
        """Every target to render: the size sets' targets, then the explicit ones (see resolve_targets)."""
        return resolve_targets(self.size_sets, self.targets)

    @property
    def logo_path(self) -> Path | None:
        """Absolute path of the brand logo, checked again to lie inside the brief's folder and to be a
        file (its image was checked when the brief was loaded, and is again when it is prepared).

        A brief built in code (no base_dir) resolves the logo against the working directory.
        """
        if self.brand.logo is None:
            return None
        base = Path(self.base_dir) if self.base_dir else Path.cwd()
        try:
            return resolve_inside(base, self.brand.logo.path)
        except ValueError as exc:
            raise BriefError([("brand.logo.path", str(exc))]) from None
