"""A run's analytics report: `report.html` beside its gallery (four plots as inline SVG and the key
figures) and the same figures as markdown for the run's Prefect artifact (which cannot show SVG)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from imagegen.analytics import CampaignReport, human_bytes, per_asset_text
from imagegen.analytics_plots import Bar, Series, bar_chart, histogram, stacked_bar_chart
from imagegen.files import open_text_atomically

REPORT_PAGE = "report.html"

GATE_SERIES = (Series("passed", "#2e7d32"), Series("fixed by an edit", "#f9a825"), Series("failed", "#c62828"))

_env = Environment(loader=PackageLoader("imagegen", "templates"), autoescape=select_autoescape(["html"]))


def latency_plot(report: CampaignReport) -> str:
    return histogram("Generation time per master, by provider",
                     {t.provider: t.seconds for t in report.times}, unit="seconds",
                     empty="no master in this run")


def cost_plot(report: CampaignReport) -> str:
    """Calls per published asset: each provider's calls of this run, all of them, and the campaign's so far."""
    title = "Provider calls per published asset"
    if not report.published:
        return bar_chart(title, [], empty=f"no published asset to share {report.provider_calls} provider call(s)")
    bars = [Bar(name, calls / report.published, f"{calls / report.published:.2f} ({calls} calls)")
            for name, calls in report.calls_by_provider.items()]
    bars.append(Bar("this run, all providers", report.provider_calls / report.published,
                    f"{report.provider_calls / report.published:.2f} ({report.provider_calls} calls)"))
    bars.append(Bar(f"campaign so far ({runs_text(report.campaign_runs)})", report.campaign_calls / report.published,
                    f"{report.campaign_calls / report.published:.2f} ({report.campaign_calls} calls)"))
    return bar_chart(title, bars)


def gates_plot(report: CampaignReport) -> str:
    return stacked_bar_chart("Gate outcomes per master, by gate",
                             [(t.gate, (t.passed, t.fixed, t.failed)) for t in report.gates], GATE_SERIES,
                             empty="no master was gated in this run")


def bytes_plot(report: CampaignReport) -> str:
    return bar_chart("Published bytes per platform",
                     [Bar(p.platform or "(none)", p.bytes, f"{human_bytes(p.bytes)} in {p.files} file(s)")
                      for p in report.platforms], empty="no file published in this run")


def runs_text(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def key_figures(report: CampaignReport) -> list[tuple[str, str]]:
    """(figure, value) rows above the page's plots, and the first of the markdown artifact's."""
    by_provider = ", ".join(f"{name} {calls}" for name, calls in report.calls_by_provider.items())
    rows = [
        ("assets published", f"{report.published} ({report.quarantined} quarantined)"),
        ("files published", f"{report.files}, {human_bytes(report.published_bytes)}"),
        ("provider calls, this run", f"{report.provider_calls}" + (f" ({by_provider})" if by_provider else "")),
        ("provider calls per published asset, this run",
         per_asset_text(report.calls_per_published(report.provider_calls))),
        (f"provider calls per published asset, campaign so far ({runs_text(report.campaign_runs)})",
         per_asset_text(report.calls_per_published(report.campaign_calls))),
    ]
    rows += [(f"generation time per master, {t.provider}",
              f"median {t.median:.2f} s, p90 {t.p90:.2f} s, max {max(t.seconds):.2f} s ({len(t.seconds)} masters)")
             for t in report.times]
    return rows


def detail_figures(report: CampaignReport) -> list[tuple[str, str]]:
    """What the gate and bytes plots show, as rows: for the markdown artifact, which shows no plot."""
    rows = [(f"gate {t.gate}", f"{t.passed} passed, {t.fixed} fixed by an edit, {t.failed} failed")
             for t in report.gates]
    rows += [(f"bytes, {p.platform or '(none)'}", f"{human_bytes(p.bytes)} in {p.files} file(s)")
             for p in report.platforms]
    return rows


def _cell(text: str) -> str:
    """A markdown table cell: pipes and line breaks would end it."""
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(report: CampaignReport, page: Path) -> str:
    lines = [f"## imagegen analytics: {report.campaign}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in key_figures(report) + detail_figures(report)]
    lines += ["", f"Plots (provider latency, calls per published asset, gates, bytes per platform): `{page}`",
              "", "Provider calls are counted, not priced: no provider prices are configured."]
    return "\n".join(lines)


def write_report_page(report: CampaignReport, page: Path, *, gallery_href: str, index_href: str) -> Path:
    plots = [
        ("latency", latency_plot(report),
         "One count per asset: the seconds the provider call that made its master took, as measured when it was "
         "made (a master reused from an earlier run keeps its time)."),
        ("cost", cost_plot(report),
         "Calls, not money: no provider prices are configured. Every paid call counts once (generations, "
         "regenerations, provider edits, VLM reviews, lost answers); an unchanged rerun adds none."),
        ("gates", gates_plot(report),
         "Per master: each gate it was checked on, passed at once, passed after an edit, or failed in the end "
         "(quarantined)."),
        ("bytes", bytes_plot(report), "Every published file, by the platform of its target."),
    ]
    html = _env.get_template(REPORT_PAGE).render(
        campaign=report.campaign, figures=key_figures(report), gallery_href=gallery_href, index_href=index_href,
        plots=[{"name": name, "svg": Markup(svg), "caption": caption} for name, svg, caption in plots])
    with open_text_atomically(page, encoding="utf-8") as fh:
        fh.write(html)
    return page
