"""The static gallery page: a contact sheet of every variant of every master, with its gate badges."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from imagegen.catalog.base import CatalogRow

_env = Environment(loader=PackageLoader("imagegen", "templates"), autoescape=select_autoescape(["html"]))


def image_src(url: str, page_dir: Path) -> str:
    """Local files are linked relative to the page, so the folder can be moved or served as is."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(os.path.relpath(unquote(parsed.path), page_dir)).as_posix()
    return url


def gate_badges(gates: dict) -> list[dict]:
    """One badge per gate: its name and whether it passed (failed gates carry their reasons)."""
    failed: dict[str, list[str]] = {}
    for failure in gates.get("failures", []):
        failed.setdefault(failure["gate"], []).append(failure["reason"])
    names = gates.get("checked") or sorted(failed)
    return [{"gate": name, "passed": name not in failed, "reasons": failed.get(name, [])} for name in names]


def picture_for_rows(rows: list[CatalogRow], page_dir: Path, alt: str, sizes: str = "100vw") -> Markup | None:
    """The asset's <picture> over its responsive renditions, with URLs relative to the page."""
    from imagegen.imaging.webdelivery import picture_html

    web = sorted((r for r in rows if r.variant.startswith("web_")), key=lambda r: r.width)
    fallback = [r for r in web if r.format in ("JPEG", "PNG")]
    if not fallback:
        return None
    srcsets: dict[str, list[tuple[str, int]]] = {}
    for r in web:
        srcsets.setdefault(r.format, []).append((image_src(r.url, page_dir), r.width))
    largest = fallback[-1]
    return Markup(picture_html(srcsets, alt=alt, width=largest.width, height=largest.height, sizes=sizes))


def write_gallery(rows: list[CatalogRow], page: Path, *, campaign: str, summary: dict,
                  gx_report: str | None = None) -> Path:
    masters: "OrderedDict[str, dict]" = OrderedDict()
    by_asset: dict[str, list[CatalogRow]] = {}
    for row in rows:
        by_asset.setdefault(row.asset_id, []).append(row)
    for row in sorted(rows, key=lambda r: (r.status != "published", r.asset_id, r.variant != "master", r.variant)):
        card = masters.setdefault(row.asset_id, {
            "asset_id": row.asset_id, "status": row.status, "prompt": row.prompt, "provider": row.provider,
            "model": row.model, "seed": row.seed, "badges": gate_badges(row.gates), "variants": [],
            "stand_in": bool(row.metadata.get("stand_in")), "edits": row.metadata.get("edits", []),
            "alt": row.alt_text, "blurhash": row.metadata.get("blurhash"), "palette": row.metadata.get("palette", []),
            "picture": picture_for_rows(by_asset[row.asset_id], page.parent, row.alt_text or row.prompt[:125]),
        })
        card["variants"].append({
            "variant": row.variant, "src": image_src(row.url, page.parent), "url": row.url, "width": row.width,
            "height": row.height, "format": row.format, "kb": round(row.bytes / 1024), "store": row.store,
            "alt": row.alt_text or row.prompt[:125],
            "signed": (row.metadata.get("content_credentials") or {}).get("c2pa") == "signed",
        })
    html = _env.get_template("gallery.html").render(
        campaign=campaign, masters=list(masters.values()), summary=summary,
        gx_report=image_src(Path(gx_report).resolve().as_uri(), page.parent) if gx_report else None)
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(page)
    return page
