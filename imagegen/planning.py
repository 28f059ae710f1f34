"""Prompt stage, pure: which masters to make, at which size, and which targets each one is cut into.

Every guard of the brief runs here, before any quota is spent. The provider is known only by its
capabilities (native sizes, aspect ratios, edits), so this runs without a provider, a server or Prefect.
"""

from __future__ import annotations

from imagegen.brief import Brief
from imagegen.imaging.brand import outpaint_size
from imagegen.models import ProviderCapabilities
from imagegen.prompts import PromptSpec, build_prompt_specs
from imagegen.sizes import Target, aspect_groups, outpaint_groups, parse_ratio, resolve_targets, size_for_ratio

# Seed 000 "COST OPTIMIZATION": 512x512 for thumbnails; a plan whose targets all fit in it asks the model
# for its faster settings (ProviderCapabilities.fast_steps)
THUMBNAIL_MAX_SIDE = 512


def thumbnails_only(targets: list[Target]) -> bool:
    return bool(targets) and all(max(t.width, t.height) <= THUMBNAIL_MAX_SIDE for t in targets)


def master_size(brief: Brief, caps: ProviderCapabilities, local_master_size: int) -> tuple[int, int]:
    """The brief's explicit size, else the provider's largest native size, else a square master."""
    if brief.provider.master_width and brief.provider.master_height:
        return brief.provider.master_width, brief.provider.master_height
    if caps.native_sizes:
        return max(caps.native_sizes, key=lambda wh: wh[0] * wh[1])
    side = min(caps.max_side, local_master_size)
    return side, side


def plan_masters(brief: Brief, caps: ProviderCapabilities, provider_name: str, model: str,
                 local_master_size: int) -> tuple[list[PromptSpec], dict[str, list[Target]]]:
    """The masters to make (one prompt spec each) and the targets each one is cut into.

    Where the provider renders native aspect ratios (neuroflash), each subject variation gets one
    master per ratio its targets need, so a 16:9 banner is not cropped out of a square; elsewhere one
    master serves every target. When every target is thumbnail-sized, masters are made with the fewer
    steps the model allows (`caps.fast_steps`), where it has such a setting.
    """
    width, height = master_size(brief, caps, local_master_size)
    explicit_size = bool(brief.provider.master_width and brief.provider.master_height)
    all_targets = resolve_targets(brief.size_sets, brief.targets)
    fast = {"steps": caps.fast_steps} if caps.fast_steps is not None and thumbnails_only(all_targets) else {}
    groups = aspect_groups(all_targets, [] if explicit_size else caps.aspect_ratios)
    specs: list[PromptSpec] = []
    targets_by_asset: dict[str, list[Target]] = {}
    for ratio, targets in groups.items():
        w, h = (width, height) if ratio is None else size_for_ratio(ratio, max(width, height))
        for spec in build_prompt_specs(brief, caps, provider=provider_name, model=model, width=w, height=h):
            spec = spec.model_copy(update=fast) if fast else spec
            if ratio is not None and len(groups) > 1:
                spec = spec.model_copy(update={"asset_id": f"{spec.asset_id}-{ratio.replace(':', 'x')}"})
            specs.append(spec)
            targets_by_asset[spec.asset_id] = targets
    if brief.publish.outpaint.enabled and caps.supports_edit and list(groups) == [None]:
        specs += outpainted_specs(specs, targets_by_asset, brief.publish.outpaint.min_crop)
    specs.sort(key=lambda s: (s.subject_index, s.variation, s.outpaint_ratio or ""))
    return specs, targets_by_asset


def outpainted_specs(specs: list[PromptSpec], targets_by_asset: dict[str, list[Target]], min_crop: float
                     ) -> list[PromptSpec]:
    """Masters extended to the aspects a crop would mutilate: each takes those targets from its base
    master (whose own list keeps the rest) and is made by the provider's edit once the base exists."""
    derived = []
    for spec in specs:
        kept, extended = outpaint_groups(targets_by_asset[spec.asset_id], spec.width, spec.height, min_crop)
        targets_by_asset[spec.asset_id] = kept
        for ratio, targets in extended.items():
            width, height = outpaint_size(spec.width, spec.height, parse_ratio(ratio), multiple_of=16)
            child = spec.model_copy(update={"asset_id": f"{spec.asset_id}-{ratio.replace(':', 'x')}",
                                            "outpaint_from": spec.asset_id, "outpaint_ratio": ratio,
                                            "width": width, "height": height})
            derived.append(child)
            targets_by_asset[child.asset_id] = targets
    return derived
