"""The brief's subject edits: `subjects[].inpaint` (a mask and an instruction) and `subjects[].style_reference`.

Both are made after a subject's master is generated, through the provider's image edit (FLUX.1 Kontext,
neuroflash /edit; the `local` stand-in edits offline), and the result is gated and catalogued like any
master. Files are named relative to the brief's folder and never leave it (imagegen.brief_paths); with
the folder known (parse_brief passes it as context) each file is read and checked as the brief loads,
so a missing, unreadable or all-black mask is a one-line brief error before anything is spent.

`style_reference` is a path when it ends in .png, .jpg, .jpeg or .webp, else a description in words.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from imagegen.brief_paths import checked_brief_file
from imagegen.guards import check_prompt_characters, find_personal_data
from imagegen.imaging.masking import DEFAULT_FEATHER, load_mask
from imagegen.imaging.style import load_reference

STYLE_REFERENCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_INSTRUCTION_CHARS = 300
MAX_STYLE_DESCRIPTION_CHARS = 200


def _no_personal_data(value: str) -> str:
    if kinds := find_personal_data(value):
        raise ValueError(f"contains personal data ({', '.join(kinds)})")
    return value


EditInstruction = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                   max_length=MAX_INSTRUCTION_CHARS),
                            BeforeValidator(check_prompt_characters), AfterValidator(_no_personal_data)]


def is_style_path(value: str) -> bool:
    """True when a style_reference names an image file rather than describing a style."""
    return value.strip().lower().endswith(STYLE_REFERENCE_SUFFIXES)


class InpaintSpec(BaseModel):
    """Repaint the mask's white area of every master of the subject following `instruction`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    mask: str = Field(min_length=1, description="PNG, white = repaint, relative to the brief's folder; the "
                                                "master's size or its aspect ratio (then resized)")
    instruction: EditInstruction
    feather: float = Field(DEFAULT_FEATHER, ge=0, le=0.1, description="Soft edge radius as a share of the "
                                                                      "master's shorter side")

    @field_validator("mask")
    @classmethod
    def _mask_inside_brief_folder(cls, value: str, info: ValidationInfo) -> str:
        return checked_brief_file(value, info.context, load_mask)


def check_style_reference(value: str | None, info: ValidationInfo) -> str | None:
    """A style reference: an image under the brief's folder (checked), or a description (prompt rules)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValueError("empty: give an image path under the brief's folder or a description of the style")
    if is_style_path(text):
        return checked_brief_file(text, info.context, load_reference)
    text = check_prompt_characters(text)
    if len(text) > MAX_STYLE_DESCRIPTION_CHARS:
        raise ValueError(f"a description of at most {MAX_STYLE_DESCRIPTION_CHARS} characters (got {len(text)}); "
                         f"an image path must end in {', '.join(STYLE_REFERENCE_SUFFIXES)}")
    return _no_personal_data(text)
