"""`imagegen emit`: send the event that starts the `on-brief-submitted` deployment.

Any system can do the same with Prefect's events API; see the README's webhook recipe for n8n.
"""

from __future__ import annotations

from pathlib import Path

BRIEF_SUBMITTED = "imagegen.brief.submitted"


def brief_event_payload(brief: str, out_dir: str) -> dict[str, str]:
    """A local path is made absolute, since the worker that runs the flow has another working directory."""
    text = brief.strip()
    # the same tests brief_from_source uses to tell the brief itself from its location
    if not text.startswith(("http://", "https://", "{", "campaign:")) and "\n" not in text:
        brief = str(Path(text).resolve())
    return {"brief": brief, "out_dir": str(Path(out_dir).resolve())}


def emit_brief_submitted(brief: str, out_dir: str, campaign: str = "adhoc"):
    from prefect.events import emit_event

    return emit_event(event=BRIEF_SUBMITTED, resource={"prefect.resource.id": f"imagegen.brief.{campaign}",
                                                       "prefect.resource.name": campaign},
                      payload=brief_event_payload(brief, out_dir))
