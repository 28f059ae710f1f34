"""The static gallery page: a contact sheet of every variant of every master, with its gate badges."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from imagegen.catalog.base import CatalogRow
from imagegen.files import open_text_atomically

_env = Environment(loader=PackageLoader("imagegen", "templates"), autoescape=select_autoescape(["html"]))


def image_src(url: str, page_dir: Path) -> str:
    """Local files are linked relative to the page, so the folder can be moved or served as is.

    The relative path is a URL again: `#`, `?`, `%` and spaces in a folder's name are escaped, or a browser
    would read them as a fragment, a query or srcset's separator.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return quote(Path(os.path.relpath(unquote(parsed.path), page_dir)).as_posix(), safe="/")
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
    from imagegen.imaging.picture import picture_html

    web = sorted((r for r in rows if r.variant.startswith("web_")), key=lambda r: r.width)
    fallback = [r for r in web if r.format in ("JPEG", "PNG")]
    if not fallback:
        return None
    srcsets: dict[str, list[tuple[str, int]]] = {}
    for r in web:
        srcsets.setdefault(r.format, []).append((image_src(r.url, page_dir), r.width))
    largest = fallback[-1]
    return Markup(picture_html(srcsets, alt=alt, width=largest.width, height=largest.height, sizes=sizes))


def asset_card(rows: list[CatalogRow], page_dir: Path) -> dict:
    """The card of one master: its rows (master first), as the gallery template draws them."""
    rows = sorted(rows, key=lambda r: (r.variant != "master", r.variant))
    first = rows[0]
    alt = first.alt_text or first.prompt[:125]
    return {
        "asset_id": first.asset_id, "status": first.status, "prompt": first.prompt, "provider": first.provider,
        "model": first.model, "seed": first.seed, "badges": gate_badges(first.gates),
        "stand_in": bool(first.metadata.get("stand_in")), "edits": first.metadata.get("edits", []),
        "alt": first.alt_text, "blurhash": first.metadata.get("blurhash"), "palette": first.metadata.get("palette", []),
        "picture": picture_for_rows(rows, page_dir, alt),
        "variants": [{
            "variant": row.variant, "src": image_src(row.url, page_dir), "url": row.url, "width": row.width,
            "height": row.height, "format": row.format, "kb": round(row.bytes / 1024), "store": row.store,
            "alt": row.alt_text or row.prompt[:125],
            "signed": (row.metadata.get("content_credentials") or {}).get("c2pa") == "signed",
        } for row in rows],
    }


class GalleryCards:
    """The gallery's cards, drawn as each chunk of masters is cataloged and kept in an unnamed temp
    file, so the page of a long run never needs every catalog row (4-6 KB each) in memory at once.

    The page lists published masters before quarantined ones, each group by asset id, whatever order
    the chunks came in.
    """

    def __init__(self, page: Path):
        self.page_dir = page.parent
        self._spool = tempfile.TemporaryFile(dir=self.page_dir if self.page_dir.is_dir() else None)
        self._index: list[tuple[bool, str, int, int]] = []  # (quarantined, asset id, offset, length)
        card_module = _env.get_template("gallery_card.html").module
        # A template module carries the template's macros as attributes set at run time, which jinja2's
        # TemplateModule type cannot name.
        self._card: Callable[[dict], Markup] = card_module.card  # type: ignore[attr-defined]

    def add(self, rows: list[CatalogRow]) -> None:
        by_asset: dict[str, list[CatalogRow]] = {}
        for row in rows:
            by_asset.setdefault(row.asset_id, []).append(row)
        for asset_id, asset_rows in by_asset.items():
            html = str(self._card(asset_card(asset_rows, self.page_dir))).encode()
            self._spool.seek(0, os.SEEK_END)
            self._index.append((asset_rows[0].status != "published", asset_id, self._spool.tell(), len(html)))
            self._spool.write(html)

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Markup]:
        for _, _, offset, length in sorted(self._index):
            self._spool.seek(offset)
            yield Markup(self._spool.read(length).decode())

    def close(self) -> None:
        self._spool.close()


def write_gallery(cards: Iterable[Markup], page: Path, *, campaign: str, summary: dict,
                  gx_report: str | None = None, cards_dir: Path | None = None, report: str | None = None) -> Path:
    """Write the page, streaming the cards into it (it is never one string in memory).

    `cards_dir` is the folder the cards' relative links start from when it is not the page's own (the
    same cards serve the latest-run page and the run's own page): a <base> then points there. `report` is the
    run's analytics page, linked from the header."""
    links_dir = cards_dir or page.parent
    relative = Path(os.path.relpath(links_dir, page.parent)).as_posix()
    base_href = relative + "/" if relative != "." else None
    stream = _env.get_template("gallery.html").stream(
        campaign=campaign, cards=cards, summary=summary, base_href=base_href,
        gx_report=image_src(Path(gx_report).resolve().as_uri(), links_dir) if gx_report else None,
        report=image_src(Path(report).resolve().as_uri(), links_dir) if report else None)
    with open_text_atomically(page, encoding="utf-8") as fh:
        # jinja2 types dump()'s file as str | IO[bytes], but writes str to a text file when no encoding is given.
        stream.dump(fh)  # type: ignore[arg-type]
    return page
