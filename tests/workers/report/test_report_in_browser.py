"""The report as a person sees it: rendered in headless Chromium at 1280 px, no text is cut,
spills out of its chart or lies over another text.

``demo-report.json`` holds the figures of a real ``distillery demo`` run (a fresh clone,
e53b43b): the page is rendered from them with today's code and looked at in the browser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.workers.report.browser import overflow_faults, require_browser
from workers.report.page import CSS, render_page

from .test_report import every_plot

HERE = Path(__file__).parent

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _browser() -> None:
    require_browser()


def test_the_demo_report_fits_its_boxes(tmp_path: Path) -> None:
    figures = json.loads((HERE / "demo-report.json").read_text(encoding="utf-8"))
    page = tmp_path / "report.html"
    page.write_text(render_page(figures), encoding="utf-8")
    assert overflow_faults(page) == []


@pytest.mark.parametrize("width", [1280, 1024])
def test_a_report_with_every_plot_fits(tmp_path: Path,
                                                             width: int) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_page(every_plot()), encoding="utf-8")
    assert overflow_faults(page, width) == []


def test_the_check_sees_a_cut_card_a_title_past_its_chart_and_text_over_text(
        tmp_path: Path) -> None:
    """What today's report had (e53b43b): the check must name each of them."""
    page = tmp_path / "faulty.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><style>{CSS}.v{{white-space:nowrap}}</style></head>"
        "<body><main><div class='cards'><div class='card'><div class='v'>1,145 / 4,388 / "
        "1,002,345</div><div class='k'>by student / teacher / fallback</div></div></div>"
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 300 100' width='300'>"
        "<text x='150' y='20' text-anchor='middle' font-size='15'>Teacher calls against system"
        " accuracy over the accuracy target (v0007, held-out verdicts)</text>"
        "<text x='40' y='60' font-size='12'>20:31:27</text>"
        "<text x='50' y='62' font-size='12'>promote</text></svg></main></body></html>",
        encoding="utf-8")
    faults = overflow_faults(page)
    assert any(f.startswith("wider than its box: div.v") for f in faults), faults
    assert any(f.startswith("outside its chart") and "Teacher calls" in f for f in faults)
    assert any(f.startswith("text over text") and "20:31:27" in f for f in faults), faults
