"""The gallery page in a real headless Chromium (Debian's chromium and chromium-driver): it loads with
no broken image, every asset shows its gate badges and alt text, and a screenshot shows the page."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imagegen_flows.deployments.cli import main as cli_main

pytestmark = pytest.mark.prefect

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), \
        "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files", "--window-size=1400,2400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def gallery_run(tmp_path: Path) -> Path:
    brief = {
        "campaign": "gallery-browser",
        "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50"]},
        "subjects": [{"subject": "a glass teapot with mint leaves", "style": "product", "seed": 5150},
                     {"subject": "a bicycle leaning on a brick wall", "style": "lifestyle", "seed": 5151}],
        "size_sets": ["linkedin"],
        "targets": [{"name": "square_avif", "platform": "web", "width": 600, "height": 600, "format": "AVIF"}],
        "provider": {"name": "local", "master_width": 1024, "master_height": 1024},
        "quality": {"max_edit_attempts": 1},
        "publish": {"responsive": {"enabled": True, "formats": ["AVIF", "WEBP", "JPEG"], "max_width": 800,
                                   "max_images": 2}},
    }
    path, out = tmp_path / "gallery.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(brief))
    assert cli_main(["run", str(path), "--out", str(out), "--json"]) == 0
    return out


def test_gallery_loads_every_image_with_badges_and_alt_text(prefect_harness, browser, tmp_path, capsys):
    out = gallery_run(tmp_path)
    capsys.readouterr()
    browser.get((out / "gallery.html").as_uri())
    # lazy images below the fold would never load in a screenshot-less check: load them all
    browser.execute_script("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not browser.execute_script(
            "return Array.from(document.images).every(i => i.complete)"):
        time.sleep(0.2)
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == []
    images = browser.execute_script("return document.images.length")
    assert images >= 2 * 4  # master, linkedin_post, square_avif and the responsive renditions, per asset

    sections = browser.find_elements("css selector", "section.master")
    assert len(sections) == 2
    for section in sections:
        badges = section.find_elements("css selector", ".badge[data-gate]")
        assert {b.get_attribute("data-gate") for b in badges} >= {"sharpness", "resolution", "brand_colors"}
        assert all(img.get_attribute("alt") for img in section.find_elements("css selector", "img"))
        assert section.find_elements("css selector", "picture source[type='image/avif']")

    shot = tmp_path / "gallery.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 20  # a rendered page, not a blank or error screen
