"""Finding a neuroflash generation whose answer was lost, in the workspace's image history.

neuroflash answers a generation synchronously and gives no request id, but every image it makes
appears in `GET /ds-prototypes/history`. When the answer to a paid request was lost, an image with
the same prompt made since the request was sent is that request's image (or one like it), and
adopting it costs nothing. Each adopted or generated image id is claimed in the pending journal, so
two masters with one prompt (neuroflash takes no seed) never adopt the same image.

The history's fields beyond output_image_id/output_image_url are UNCONFIRMED: the prompt and the
creation time are read from the names the emulator and the web app use; an item without them is
never adopted (the request is then paid again, as it would be without this lookup).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import quote

from imagegen.pending import PendingJournal, PendingRequest
from imagegen.providers.neuroflash_api import PROVIDER, HistoryItem, NeuroflashImage

# The provider's clock and ours disagree a little; an image stamped this much before the send still counts.
CLOCK_SKEW_SECONDS = 60.0
_TIME_FIELDS = ("created_at", "createdAt", "created", "timestamp")
_PROMPT_FIELDS = ("prompt", "input_prompt", "text")


def created_at(item: HistoryItem) -> float | None:
    """The item's creation time as epoch seconds (ISO 8601 text or a number), None if it has none."""
    extra: dict[str, Any] = item.model_extra or {}
    for name in _TIME_FIELDS:
        value = extra.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) / (1000.0 if value > 1e11 else 1.0)  # milliseconds since the epoch, too
        if isinstance(value, str) and value.strip():
            try:
                return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def prompt_of(item: HistoryItem) -> str | None:
    extra: dict[str, Any] = item.model_extra or {}
    for name in _PROMPT_FIELDS:
        value = extra.get(name)
        if isinstance(value, str):
            return value
    return None


def lost_image_candidates(items: list[HistoryItem], lost: PendingRequest) -> list[HistoryItem]:
    """History items that may be the lost request's image: same prompt, made since it was sent
    (less CLOCK_SKEW_SECONDS), with an image id; oldest first."""
    if lost.prompt is None:
        return []
    since = lost.sent_at - CLOCK_SKEW_SECONDS
    found = []
    for item in items:
        when = created_at(item)
        prompt = prompt_of(item)
        if item.output_image_id and when is not None and when >= since and prompt is not None \
                and prompt.strip() == lost.prompt.strip():
            found.append((when, item))
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]


def adopt_lost_image(items: list[HistoryItem], lost: PendingRequest,
                     journal: PendingJournal) -> tuple[NeuroflashImage, HistoryItem] | None:
    """The first candidate no other master has claimed (claiming it now), as an image to download."""
    for item in lost_image_candidates(items, lost):
        image_id = str(item.output_image_id)
        if not journal.claim(PROVIDER, image_id):
            continue
        url = item.output_image_url or f"/api/ds-prototypes/image_generation/{quote(image_id, safe='')}/view"
        content_type = (item.model_extra or {}).get("content_type")
        return NeuroflashImage(url=url, image_id=image_id,
                               content_type=content_type if isinstance(content_type, str) else None), item
    return None
