"""What a run reports when it ends: the CLI prints it, `--json` emits it, the flow returns it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from imagegen.redaction import mask_urls_in


class FailedAsset(BaseModel):
    asset_id: str
    stage: str
    reason: str = Field(description="The first failure: what went wrong, not what failed while cleaning up")
    left_behind: list[str] = Field(default_factory=list,
                                   description="Files the failed step stored and could not remove again "
                                               "('store:key (why)'): no catalog row names them")

    @field_validator("reason")
    @classmethod
    def _urls_masked(cls, reason: str) -> str:
        """A reason quotes an error's text; a URL in it may carry credentials (the clients mask theirs,
        this holds for any other)."""
        return mask_urls_in(reason)

    @field_validator("left_behind")
    @classmethod
    def _left_urls_masked(cls, lines: list[str]) -> list[str]:
        return [mask_urls_in(line) for line in lines]


class RepairedFile(BaseModel):
    """A published file that did not hold what its catalog row says, found by its sha256 and rewritten."""

    asset_id: str
    variant: str
    location: str = Field(description="store:key")
    problem: Literal["changed", "missing"]
    found_sha256: str | None = None
    expected_sha256: str | None = Field(None, description="What the row named; None when no row named the key")

    def line(self) -> str:
        if self.problem == "missing":
            return (f"{self.location} ({self.asset_id} {self.variant}) was missing; "
                    "its row's file was written again from the master")
        found = (self.found_sha256 or "")[:12]
        named = (f"not the sha256 {self.expected_sha256[:12]} its row names" if self.expected_sha256
                 else "and no row named it")
        return (f"{self.location} ({self.asset_id} {self.variant}) held other bytes (sha256 {found}), {named}; "
                "rewritten from the master")


class FaceTally(BaseModel):
    """The faces gates of a run (quality.faces, or `style: portrait` subjects): masters whose faces were
    checked, how many showed a face, and the failures of each faces gate in the last gate round."""

    masters_checked: int = 0
    with_faces: int = 0
    faces: int = 0
    failures: dict[str, int] = Field(default_factory=dict)

    def line(self) -> str:
        failed = ", ".join(f"{gate} {count}" for gate, count in sorted(self.failures.items()))
        return (f"faces: {self.masters_checked} master(s) checked, {self.with_faces} with a face "
                f"({self.faces} in all); " + (f"failed: {failed}" if failed else "every face passed its gates"))


def tally_faces(results: dict) -> FaceTally | None:
    """The FaceTally of gate results (imagegen.quality.GateResult by asset id); None when no master was
    measured for faces."""
    checked = [r for r in results.values() if r.measurements.get("face_count") is not None]
    if not checked:
        return None
    failures: dict[str, int] = {}
    for result in checked:
        for gate in {f.gate for f in result.failures if f.gate.startswith("face_")}:
            failures[gate] = failures.get(gate, 0) + 1
    return FaceTally(masters_checked=len(checked), with_faces=sum(1 for r in checked if r.measurements["face_count"]),
                     faces=sum(r.measurements["face_count"] for r in checked), failures=failures)


class RunSummary(BaseModel):
    campaign: str
    out_dir: str
    masters: int = Field(0, description="Masters planned (subjects x variations)")
    generated: int = Field(0, description="Masters that exist after the generate stage (new or cached)")
    published: int = 0
    quarantined: int = 0
    failed: list[FailedAsset] = Field(default_factory=list)
    files_stored: int = Field(0, description="Files the stores hold for this run")
    files_written: int = Field(0, description="Files actually written this run (0 on an unchanged rerun)")
    files_removed: int = Field(0, description="Files of an earlier state removed (a status change, a moved file)")
    repaired: list[RepairedFile] = Field(default_factory=list,
                                         description="Files that did not hold what their rows say, rewritten")
    provider_calls: int = 0
    provider_calls_by_provider: dict[str, int] = Field(default_factory=dict,
                                                       description="provider_calls split by the provider called "
                                                                   "(`vlm`: the reviewer)")
    outcome_unknown: int = Field(0, description="Paid calls whose answer was lost in transit (counted as spent; "
                                                "each request sent again at most once)")
    answers_recovered: int = Field(0, description="Lost or late answers found again without paying: NVCF "
                                                  "request ids polled again, neuroflash history images adopted")
    providers_used: dict[str, int] = Field(default_factory=dict,
                                           description="Masters by the provider that made them (new or cached)")
    providers_skipped: dict[str, str] = Field(default_factory=dict,
                                              description="Providers of the chain that failed their pre-flight "
                                                          "(credentials, quota) and were not used: name -> why")
    rerendered: int | None = Field(None, description="Size-set runs: published masters re-rendered (no provider)")
    provider_usage: dict[str, dict] = Field(default_factory=dict,
                                            description="Quota before and after, for providers that report it")
    catalog_inserted: int = 0
    catalog_updated: int = 0
    catalog_unchanged: int = 0
    catalog_deleted: int = Field(0, description="Rows of an earlier state deleted (a status change)")
    catalog: str = ""
    gallery: str = ""
    report: str = Field("", description="The run's analytics page (report.html beside its gallery)")
    gx_report: str | None = None
    faces: FaceTally | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The human summary the CLI prints."""
        counts = (f"{self.published} published, {self.quarantined} quarantined"
                  + (f", {len(self.failed)} failed" if self.failed else ""))
        files = (f"files: {self.files_stored} stored, {self.files_written} written this run"
                 + (f", {self.files_removed} removed" if self.files_removed else "")
                 + (f", {len(self.repaired)} repaired" if self.repaired else ""))
        if self.rerendered is not None:  # a size-set run: nothing planned or generated, only re-rendered
            out = [f"campaign {self.campaign}: re-rendered {self.rerendered} published masters, "
                   f"{self.provider_calls} provider calls; {counts}", files]
        else:
            by_provider = ", ".join(f"{name} {n}" for name, n in sorted(self.providers_used.items()))
            out = [f"campaign {self.campaign}: {self.masters} masters planned, {self.generated} generated, {counts}",
                   files,
                   f"provider calls: {self.provider_calls}"
                   + (f"; masters by provider: {by_provider}" if by_provider else "")]
        if self.outcome_unknown or self.answers_recovered:
            out.append(f"lost answers: outcome unknown: {self.outcome_unknown}, recovered without paying again: "
                       f"{self.answers_recovered}")
        out += [
            f"catalog: {self.catalog} (+{self.catalog_inserted} new, {self.catalog_updated} updated, "
            f"{self.catalog_unchanged} unchanged"
            + (f", {self.catalog_deleted} deleted" if self.catalog_deleted else "") + ")",
        ]
        out += [f"skipped {name}: {reason}" for name, reason in self.providers_skipped.items()]
        for name, usage in sorted(self.provider_usage.items()):
            before, after = usage.get("before") or {}, usage.get("after") or {}
            out.append(f"{name} quota: {before.get('available', '?')} available before, "
                       f"{after.get('available', '?')} after")
        out += [f"failed: {f.asset_id} at {f.stage}: {f.reason}"
                + (f"; left behind without a catalog row: {', '.join(f.left_behind)}" if f.left_behind else "")
                for f in self.failed]
        out += [f"repaired: {r.line()}" for r in self.repaired]
        if self.faces is not None:
            out.append(self.faces.line())
        if self.gx_report:
            out.append(f"quality report: {self.gx_report}")
        out.append(f"gallery: {self.gallery}")
        if self.report:
            out.append(f"analytics: {self.report}")
        out.append(f"took {self.seconds:.1f} s")
        return out
