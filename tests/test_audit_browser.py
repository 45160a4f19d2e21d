"""An audit report in a real browser: headless Chromium opens `index.html` from the local files, as a user
would, after a small audit of a model file and generated PNGs (tests/test_audit.py) with defenses, whose
report starts with the deployment without one. No console error, every image loads, the verdict is on the
first screen.

Marker `browser` (`python -m pytest -m browser`), like tests/test_site_browser.py, whose browser it uses;
screenshots go to $BENCH_SCREENSHOTS, or to pytest's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_audit import run_audit
from tests.test_site_browser import _broken_images, _console_errors, _save_page, _wait_loaded, browser, screenshots  # noqa: F401

pytestmark = pytest.mark.browser

FIRST_SCREEN = 900  # pixels: the window's height


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """An audit with defenses: its report holds the undefended deployment too (every audit starts from it)."""
    defenses = ("--defenses", "prune(0.5),dp(clip=1, sigma=0.1, data_size=18)", "--bn-mode", "eval")
    return run_audit(tmp_path_factory.mktemp("audit-defenses"), *defenses)


def test_report_opens_with_the_verdict_on_the_first_screen(browser, screenshots, report: Path):  # noqa: F811
    browser.get((report / "index.html").as_uri())
    _wait_loaded(browser)
    assert _console_errors(browser) == []
    assert browser.execute_script("return document.images.length") > 0 and _broken_images(browser) == []
    verdict = browser.find_element("id", "verdict")
    assert verdict.is_displayed() and verdict.rect["y"] + verdict.rect["height"] <= FIRST_SCREEN
    items = [li.text for li in verdict.find_elements("css selector", "li")]
    assert items and items[0].startswith("Labels") and ("Images leak" in items[1] or "No attack" in items[1])
    for anchor in ("batch-sizes", "b1", "b2", "method"):
        assert browser.find_element("id", anchor).is_displayed()
    headings = [h.text for h in verdict.find_elements("css selector", "h3")]
    assert headings[0].startswith("Without a defense") and any(h.startswith("With dp(") for h in headings)
    assert browser.find_element("id", "defenses").find_elements("css selector", "figure.plot img")
    browser.save_screenshot(str(screenshots / f"{report.parent.name}-first-screen.png"))
    _save_page(browser, screenshots / f"{report.parent.name}.png")
