"""The published site in a real browser: headless Chromium (the Debian package, driven by its own
chromedriver) opens the index and every sweep page from the local files and checks what a reader sees.

Runs under its own marker (`python -m pytest -m browser`); skipped when Chromium or chromedriver is not
installed, unless BENCH_BROWSER_REQUIRED is set (CI installs both and sets it). Screenshots of the index
and of a sweep page go to $BENCH_SCREENSHOTS, or to pytest's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SITE = Path(__file__).resolve().parents[1] / "leaderboard" / "site"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
)  # fmt: skip


def _missing(message: str) -> None:
    if os.environ.get("BENCH_BROWSER_REQUIRED"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        _missing("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="gibench-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver path is given, so Selenium never looks for (or downloads) a driver of its own
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BENCH_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(driver, relative: str) -> None:
    driver.get((SITE / relative).as_uri())
    _wait_loaded(driver)


def _wait_loaded(driver, seconds: float = 30.0) -> None:
    """Until the page and its images have loaded: `get` may return while the document is still interactive."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )


def _visible_rows(driver) -> list:
    return [row for row in driver.find_elements("css selector", "section.board tbody tr") if row.is_displayed()]


def _save_page(driver, path: Path) -> Path:
    """The whole page: the window is made as tall as the document first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 20, 8000))
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path


def test_index_lists_every_sweep_and_links_to_its_page(browser, screenshots):
    _open(browser, "index.html")
    rows = browser.find_elements("css selector", "#sweeps tbody tr")
    names = [row.find_element("css selector", "th a").text for row in rows]
    assert names == sorted(p.name for p in SITE.iterdir() if p.is_dir())
    assert _console_errors(browser) == []
    _save_page(browser, screenshots / "index.png")
    rows[0].find_element("css selector", "th a").click()
    assert browser.current_url.endswith(f"/{names[0]}/index.html")
    assert browser.find_element("css selector", "h1").text == names[0]


@pytest.mark.parametrize("sweep", sorted(p.name for p in SITE.iterdir() if p.is_dir()))
def test_sweep_page_renders_tables_and_images(browser, sweep):
    _open(browser, f"{sweep}/index.html")
    assert _console_errors(browser) == []
    images = browser.execute_script("return document.images.length")
    assert images > 0 and _broken_images(browser) == []
    rows = _visible_rows(browser)
    assert rows and all(row.size["height"] > 0 for row in rows)
    assert browser.find_element("id", "shown").text == f"showing {len(rows)} of {len(rows)} rows"


def _labels(table) -> list[str]:
    return [th.text for th in table.find_elements("css selector", "tbody th")]


def test_sorting_orders_rows_by_the_clicked_column(browser, screenshots):
    _open(browser, "cpu-images/index.html")
    table = browser.find_element("css selector", "section.board table")
    before = _labels(table)
    column = "2"  # B = 2: the attacks' order there differs from the table's (iDLG is skipped at B > 1)
    header = table.find_element("css selector", f'thead th[data-col="{column}"]')
    cells = {
        label: cell.get_attribute("data-value")
        for label, cell in zip(before, table.find_elements("css selector", f'tbody td[data-col="{column}"]'))
    }
    expected = sorted(before, key=lambda label: (cells[label] == "", -float(cells[label] or 0)))
    header.find_element("tag name", "button").click()
    assert header.get_attribute("aria-sort") == "descending"  # PSNR: higher is better, best first
    assert _labels(table) == expected and expected != before
    header.find_element("tag name", "button").click()
    ascending = [label for label in reversed(expected) if cells[label] != ""]
    assert _labels(table)[: len(ascending)] == ascending
    _save_page(browser, screenshots / "sweep-cpu-images.png")
    assert _console_errors(browser) == []


def test_filters_change_the_visible_rows(browser):
    from selenium.webdriver.support.ui import Select

    _open(browser, "labels-resnet50/index.html")
    everything = len(_visible_rows(browser))
    Select(browser.find_element("css selector", 'select[data-filter="b"]')).select_by_value("256")
    rows = _visible_rows(browser)
    assert 0 < len(rows) < everything
    boards = [b for b in browser.find_elements("css selector", "section.board") if b.is_displayed()]
    assert len(boards) == 1 and "B=256" in boards[0].find_element("tag name", "h3").text
    Select(browser.find_element("css selector", 'select[data-filter="r"]')).select_by_value("0.96")
    columns = [th.text for th in boards[0].find_elements("css selector", "thead th[data-col]") if th.is_displayed()]
    assert columns == ["r=0.961"]  # only the chosen column stays, headed by the rate B = 256 achieves
    Select(browser.find_element("css selector", 'select[data-filter="b"]')).select_by_value("")
    Select(browser.find_element("css selector", 'select[data-filter="r"]')).select_by_value("")
    assert len(_visible_rows(browser)) == everything
    assert _console_errors(browser) == []
