"""An event-triggered run's brief and output folder, checked before anything is read, fetched or written.

The checks themselves are Prefect-free (imagegen/event_inputs.py); this adds what a sender can see: a
refused payload fails the run with its reason (visible in the UI) and emits `imagegen.brief.rejected`,
an event another automation can forward to whoever sent the brief.
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import emit_event
from prefect.runtime import flow_run

from imagegen.brief import Brief
from imagegen.brief_source import brief_from_source
from imagegen.errors import BriefError
from imagegen.event_inputs import check_brief_path, check_brief_url, check_event_brief, confined_out_dir
from imagegen.settings import ImagegenSettings

REJECTED_EVENT = "imagegen.brief.rejected"


def confined_inputs(brief: object, out_dir: str, brief_dir: str | None,
                    settings: ImagegenSettings) -> tuple[Brief, Path]:
    """The brief and output folder of an event-triggered run, or BriefError (and the rejected event)."""
    trusted = settings.brief_trusted_hosts.split(",")
    try:
        check_event_brief(brief, settings.briefs_root, trusted)
        out = confined_out_dir(out_dir, settings.output_root)
        the_brief = brief_from_source(brief, Path(brief_dir) if brief_dir else None,  # type: ignore[arg-type]
                                      check_url=lambda url: check_brief_url(url, trusted))
        if (logo := the_brief.logo_path) is not None:  # already inside the brief's folder; that may be elsewhere
            check_brief_path(logo, settings.briefs_root, "brand.logo.path")
    except BriefError as exc:
        emit_event(event=REJECTED_EVENT, resource={"prefect.resource.id": "imagegen.brief.rejected"},
                   payload={"reason": str(exc), "flow_run_id": str(flow_run.id or "")})
        raise
    return the_brief, out
