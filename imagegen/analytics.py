"""A campaign's analytics: the seed's `image_analytics` record of each catalogued file, and the figures of a
run's report (generation time per provider, provider calls per published asset, gates, bytes per platform).

The catalog database answers the same record from its `image_analytics` view
(imagegen/sql/image_analytics.<dialect>.sql); `analytics_record` is that view's definition in Python,
for the report, which is built from the rows the run catalogued (no second read of the database).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from imagegen.catalog.base import CatalogRow

GateOutcome = Literal["passed", "fixed", "failed"]


class ImageAnalytics(BaseModel):
    """The seed's record (ANALYTICS, `track_image_performance`) of one stored file, plus what the report
    groups by. One per media_assets row: what `SELECT * FROM image_analytics` answers for it."""

    campaign: str
    asset_id: str
    variant: str
    filename: str
    size_kb: float = Field(description="bytes / 1024")
    dimensions: str = Field(description="'<width>x<height>'")
    format: str
    generation_time: float = Field(description="Seconds the provider call that made the file's master took")
    prompt_length: int = Field(description="Characters of the prompt")
    model: str
    provider: str
    platform: str
    status: str
    bytes: int


ANALYTICS_COLUMNS = tuple(ImageAnalytics.model_fields)


def analytics_record(row: CatalogRow) -> ImageAnalytics:
    """The `image_analytics` record of one catalog row (the view's definition, in Python)."""
    return ImageAnalytics(
        campaign=row.campaign, asset_id=row.asset_id, variant=row.variant, filename=row.store_key.rsplit("/", 1)[-1],
        size_kb=row.bytes / 1024, dimensions=f"{row.width}x{row.height}", format=row.format,
        generation_time=row.generation_ms / 1000, prompt_length=len(row.prompt), model=row.model,
        provider=row.provider, platform=str(row.metadata.get("platform") or ""), status=row.status, bytes=row.bytes)


def gate_outcomes(gates: dict[str, Any]) -> dict[str, GateOutcome]:
    """Each gate a master was checked on (the catalog's `gates` column), and how it ended: passed at once,
    fixed (failed in an earlier round, passed after an edit) or failed (in the final round)."""
    failed = {failure["gate"] for failure in gates.get("failures", [])}
    earlier = {failure["gate"] for round_ in gates.get("history", []) for failure in round_.get("failures", [])}
    checked = gates.get("checked") or sorted(failed | earlier)
    return {gate: "failed" if gate in failed else "fixed" if gate in earlier else "passed" for gate in checked}


class GateTally(BaseModel):
    gate: str
    passed: int = 0
    fixed: int = 0
    failed: int = 0


class PlatformBytes(BaseModel):
    platform: str
    bytes: int
    files: int


class ProviderTimes(BaseModel):
    provider: str
    seconds: list[float] = Field(description="Generation time of each master, one per asset")

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        """The nearest-rank 90th percentile: a time at least 90 % of the masters did not exceed."""
        ordered = sorted(self.seconds)
        return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


class CampaignReport(BaseModel):
    """What a run's report shows, all of it derived from the run's catalog rows and run summaries."""

    campaign: str
    published: int = Field(description="Assets (masters) published")
    quarantined: int
    files: int = Field(description="Published files, every variant")
    published_bytes: int
    provider_calls: int = Field(description="Paid provider calls of this run (0 on an unchanged rerun)")
    calls_by_provider: dict[str, int] = Field(default_factory=dict)
    campaign_calls: int = Field(description="Provider calls of every recorded run of the campaign in this folder")
    campaign_runs: int
    times: list[ProviderTimes] = Field(default_factory=list)
    gates: list[GateTally] = Field(default_factory=list)
    platforms: list[PlatformBytes] = Field(default_factory=list)

    def calls_per_published(self, calls: int) -> float | None:
        """Provider calls per published asset; None when nothing was published (no asset to share them)."""
        return calls / self.published if self.published else None


@dataclass
class ReportTally:
    """A run's report figures gathered as its rows are catalogued, chunk by chunk: a few numbers per asset
    and per platform, so a long run keeps no record per file."""

    statuses: dict[str, str] = field(default_factory=dict)  # asset id -> status
    times: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))  # provider -> asset -> s
    platform_bytes: Counter[str] = field(default_factory=Counter)  # published files only
    platform_files: Counter[str] = field(default_factory=Counter)
    gates: dict[str, GateTally] = field(default_factory=dict)

    def add(self, row: CatalogRow) -> None:
        record = analytics_record(row)
        if record.asset_id not in self.statuses:  # every row of an asset carries its master's gates
            for gate, outcome in gate_outcomes(row.gates).items():
                tally = self.gates.setdefault(gate, GateTally(gate=gate))
                setattr(tally, outcome, getattr(tally, outcome) + 1)
        self.statuses[record.asset_id] = record.status
        self.times[record.provider][record.asset_id] = record.generation_time  # every variant: its master's time
        if record.status == "published":
            self.platform_bytes[record.platform] += record.bytes
            self.platform_files[record.platform] += 1

    def report(self, campaign: str, *, provider_calls: int, calls_by_provider: dict[str, int],
               earlier_calls: Iterable[int]) -> CampaignReport:
        """With the run's provider calls, and those of the campaign's other recorded runs (`earlier_calls`)."""
        earlier = list(earlier_calls)
        statuses = self.statuses.values()
        return CampaignReport(
            campaign=campaign, published=sum(1 for s in statuses if s == "published"),
            quarantined=sum(1 for s in statuses if s == "quarantined"), files=sum(self.platform_files.values()),
            published_bytes=sum(self.platform_bytes.values()), provider_calls=provider_calls,
            calls_by_provider=dict(sorted(calls_by_provider.items())), campaign_calls=provider_calls + sum(earlier),
            campaign_runs=1 + len(earlier),
            times=[ProviderTimes(provider=p, seconds=[s for _, s in sorted(by_asset.items())])
                   for p, by_asset in sorted(self.times.items())],
            gates=[self.gates[gate] for gate in sorted(self.gates)],
            platforms=[PlatformBytes(platform=p, bytes=self.platform_bytes[p], files=self.platform_files[p])
                       for p in sorted(self.platform_bytes, key=lambda p: (-self.platform_bytes[p], p))])


def build_report(campaign: str, rows: Iterable[CatalogRow], *, provider_calls: int, calls_by_provider: dict[str, int],
                 earlier_calls: Iterable[int]) -> CampaignReport:
    """The report of a run from the catalog rows of the files it catalogued (all at once)."""
    tally = ReportTally()
    for row in rows:
        tally.add(row)
    return tally.report(campaign, provider_calls=provider_calls, calls_by_provider=calls_by_provider,
                        earlier_calls=earlier_calls)


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.2f} GB"


def per_asset_text(value: float | None) -> str:
    return "no published asset" if value is None else f"{value:.2f}"
