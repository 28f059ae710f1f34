"""What a subject's edits after generation are (style transfer, then masked inpainting), checked before any spend.

`plan_subject_edits` turns a brief's `subjects[].style_reference` and `subjects[].inpaint` into small,
picklable `SubjectEdit`s (files resolved, their sha256 taken), checks every mask against the size of
each master planned for its subject and that the provider can edit at all, and raises a BriefError
naming the field otherwise. Style goes first so the repainted area is drawn in the new style (and so a
neuroflash master keeps the image id its edit needs). The instructions' wording lives here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from imagegen.brief import Brief
from imagegen.brief_edits import is_style_path
from imagegen.brief_paths import resolve_inside
from imagegen.errors import BriefError
from imagegen.imaging.masking import MaskError, fit_mask, load_mask
from imagegen.imaging.style import StyleReferenceError, describe_reference, load_reference
from imagegen.models import ProviderCapabilities
from imagegen.prompts import PromptSpec

# How a style reference reaches each provider's edit: FLUX.1 Kontext reads it from a two-panel canvas;
# neuroflash edits only images it made, so it gets the reference in words; the offline stand-in reads
# the file itself (colour statistics).
StyleInput = Literal["two_panel", "words", "reference_file", "description"]
WORDS_ONLY_PROVIDERS = frozenset({"neuroflash"})
FILE_READING_PROVIDERS = frozenset({"local"})


class SubjectEdit(BaseModel):
    """One edit every master of a subject gets after generation."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["style", "inpaint"]
    field: str  # the brief field it comes from, for messages
    instruction: str = ""
    mask_path: str | None = None
    mask_sha256: str | None = None
    feather: float = 0.0
    reference_path: str | None = None
    reference_sha256: str | None = None
    description: str | None = None  # a style in words: the brief's own, or the reference described

    def key_part(self) -> str:
        """What besides the source bytes and instruction decides the paid edit (the ledger key)."""
        return f"{self.kind}:{self.mask_sha256 or self.reference_sha256 or self.description or ''}"


def style_input(provider_name: str, edit: SubjectEdit) -> StyleInput:
    """How `edit`'s style reaches `provider_name`'s edit."""
    if edit.reference_path is None:
        return "description"
    if provider_name in WORDS_ONLY_PROVIDERS:
        return "words"
    return "reference_file" if provider_name in FILE_READING_PROVIDERS else "two_panel"


def style_instruction(edit: SubjectEdit, how: StyleInput) -> str:
    """The edit instruction for a style transfer: keep the content, take the style."""
    if how == "two_panel":
        return ("Two panels side by side. Redraw the left panel in the style of the right panel: keep the left "
                "panel's content, subjects and composition, take the right panel's style (colours, medium, "
                "texture, lighting). Keep both panels in place.")
    return (f"Keep the content, take the style: redraw this image in the style of {edit.description}, keeping "
            f"its subjects and composition.")


def _subject_edits(brief: Brief, index: int, base: Path) -> list[SubjectEdit]:
    subject, edits = brief.subjects[index], []
    if subject.style_reference:
        field = f"subjects[{index}].style_reference"
        if is_style_path(subject.style_reference):
            path = _resolve(brief, base, subject.style_reference, field)
            try:
                reference = load_reference(path)
            except StyleReferenceError as exc:
                raise BriefError([(field, str(exc))]) from None
            edits.append(SubjectEdit(kind="style", field=field, reference_path=str(path),
                                     reference_sha256=reference.sha256,
                                     description=describe_reference(reference.image)))
        else:
            edits.append(SubjectEdit(kind="style", field=field, description=subject.style_reference))
    if subject.inpaint:
        field = f"subjects[{index}].inpaint.mask"
        path = _resolve(brief, base, subject.inpaint.mask, field)
        try:
            mask = load_mask(path)
        except MaskError as exc:
            raise BriefError([(field, str(exc))]) from None
        edits.append(SubjectEdit(kind="inpaint", field=field, instruction=subject.inpaint.instruction,
                                 mask_path=str(path), mask_sha256=mask.sha256, feather=subject.inpaint.feather))
    return edits


def _resolve(brief: Brief, base: Path, relative: str, field: str) -> Path:
    try:
        return resolve_inside(base, relative)
    except ValueError as exc:
        raise BriefError([(field, str(exc))]) from None


def plan_subject_edits(brief: Brief, specs: list[PromptSpec], caps: ProviderCapabilities
                       ) -> dict[str, list[SubjectEdit]]:
    """The edits of each planned master by asset id (outpainted masters take theirs from their base).

    Raises BriefError (field: reason) for a file that is gone, unreadable or not an image, a mask that
    fits no planned master's size, or a provider with no edit, before anything is spent."""
    base = Path(brief.base_dir) if brief.base_dir else Path.cwd()
    by_subject = {index: edits for index in range(len(brief.subjects)) if (edits := _subject_edits(brief, index, base))}
    if by_subject and not (caps.supports_edit or caps.is_stand_in):
        field = next(iter(by_subject.values()))[0].field
        raise BriefError([(field, "the provider has no image edit (configure an edit model such as "
                                  "FLUX.1 Kontext), so this subject cannot be edited after generation")])
    planned: dict[str, list[SubjectEdit]] = {}
    checked: set[tuple[str, int, int]] = set()
    for spec in specs:
        if spec.outpaint_from or spec.subject_index not in by_subject:
            continue
        for edit in by_subject[spec.subject_index]:
            if edit.mask_path is not None and (edit.mask_path, spec.width, spec.height) not in checked:
                check_mask_fits(edit, (spec.width, spec.height))
                checked.add((edit.mask_path, spec.width, spec.height))
        planned[spec.asset_id] = by_subject[spec.subject_index]
    return planned


def check_mask_fits(edit: SubjectEdit, size: tuple[int, int]) -> None:
    """BriefError naming the mask field unless the mask fits a master of `size` (imagegen.imaging.masking)."""
    assert edit.mask_path is not None
    try:
        fit_mask(load_mask(Path(edit.mask_path)).weights, size)
    except MaskError as exc:
        raise BriefError([(edit.field, str(exc))]) from None
