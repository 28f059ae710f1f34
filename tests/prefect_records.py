"""What the Prefect API and result storage hold, as text, for tests that look for leaked secrets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def api_records(events_since: datetime | None = None) -> str:
    """Every log, artifact, flow run and task run the API holds (and the events since
    `events_since`, when given: the API pages them 50 at a time), one JSON document a line."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventOccurredFilter
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    parts: list[str] = []
    with get_client(sync_client=True) as client:
        for reader in (client.read_logs, lambda **kw: client.read_artifacts(**kw),
                       lambda **kw: client.read_flow_runs(**kw), lambda **kw: client.read_task_runs(**kw)):
            offset = 0
            while True:
                page = reader(limit=200, offset=offset)
                parts += [item.model_dump_json() for item in page]
                if len(page) < 200:
                    break
                offset += 200
        if events_since is not None:
            events = client.read_events(EventFilter(occurred=EventOccurredFilter(since=events_since)), limit=50)
            while True:
                parts += [event.model_dump_json() for event in events.events]
                if not events.next_page:
                    break
                events = client.read_events_page(events.next_page)
    return "\n".join(parts)


def files_text(*roots: Path) -> bytes:
    """The bytes of every file under `roots`, one after another."""
    blob = b""
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                blob += path.read_bytes() + b"\n"
    return blob


def around(text: str, needle: str, width: int = 400) -> str:
    """The text around the first `needle`: where a leak came from."""
    at = text.find(needle)
    return text[max(0, at - width):at + len(needle) + width // 4]
