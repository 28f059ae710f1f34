"""The gallery page drawn chunk by chunk: cards spooled to disk, the page streamed from them."""

from __future__ import annotations

import os
import re
from pathlib import Path

from imagegen.catalog.base import CatalogRow
from imagegen.gallery import GalleryCards, write_gallery


def _rows(asset_id: str, status: str, variants=("feed_square", "master")) -> list[CatalogRow]:
    gates = {"passed": status == "published", "checked": ["sharpness"],
             "failures": [] if status == "published" else [{"gate": "sharpness", "reason": "blurry <b>"}]}
    return [CatalogRow(campaign="c", asset_id=asset_id, variant=v, url=f"file:///tmp/out/{asset_id}/{v}.jpg",
                       store="local", store_key=f"{asset_id}/{v}", width=64, height=64, format="JPEG", bytes=2048,
                       sha256="0" * 64, prompt=f"prompt of {asset_id}", provider="local", model="m", seed=1,
                       gates=gates, status=status) for v in variants]


def _cards_in(page: Path) -> list[tuple[str, str]]:
    return re.findall(r'data-asset="([^"]+)" data-status="([^"]+)"', page.read_text())


def test_cards_from_any_chunk_order_list_published_first_then_by_asset(tmp_path):
    page = tmp_path / "gallery.html"
    cards = GalleryCards(page)
    cards.add(_rows("b-2", "published") + _rows("a-9", "quarantined"))
    cards.add(_rows("a-1", "published"))
    cards.add(_rows("c-3", "published"))
    assert len(cards) == 4
    write_gallery(cards, page, campaign="c", summary={"masters": 4, "published": 3, "quarantined": 1, "files": 8,
                                                       "provider_calls": 4})
    cards.close()
    assert _cards_in(page) == [("a-1", "published"), ("b-2", "published"), ("c-3", "published"),
                               ("a-9", "quarantined")]
    html = page.read_text()
    # each card keeps its master first, links relative to the page, and escapes what the rows carry
    assert re.findall(r'<figure data-variant="([^"]+)"', html)[:2] == ["master", "feed_square"]
    assert 'src="file:' not in html and f'src="{os.path.relpath("/tmp/out/a-1/master.jpg", tmp_path)}"' in html
    assert "sharpness: blurry &lt;b&gt;" in html and "blurry <b>" not in html
    assert not page.with_suffix(".tmp").exists()


def test_the_spool_is_an_unnamed_file_that_leaves_nothing_behind(tmp_path):
    page = tmp_path / "gallery.html"
    cards = GalleryCards(page)
    cards.add(_rows("a-1", "published"))
    cards.close()
    assert list(tmp_path.iterdir()) == []


def test_local_links_are_urls_that_lead_back_to_the_file_whatever_the_folder_names(tmp_path):
    from urllib.parse import unquote, urljoin

    from imagegen.gallery import image_src

    out = tmp_path / "out #1?a b%20"
    image = out / "assets" / "spring #2" / "hero?.png"
    page_dir = tmp_path / "pages"
    link = image_src(image.as_uri(), page_dir)
    assert not {"#", "?", " "} & set(link), link
    resolved = urljoin((page_dir / "gallery.html").as_uri(), link)
    assert Path(unquote(resolved.removeprefix("file://"))) == image
