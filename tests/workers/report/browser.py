"""Render a page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by selenium) and list what a person would see cut or overlapping.

Chromium is not a Python package: ``.ci/run`` installs it with apt and sets
``DISTILLERY_BROWSER_TESTS=required``, so that in CI a missing browser fails the test; on a
machine without it the browser tests are skipped and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.programs import require_programs

CHROMIUM = os.environ.get("DISTILLERY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DISTILLERY_CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH = 1280  # the width the report is judged at

# Three faults, each a line of the result:
# - an element whose content is wider than its box (clipped, or spilling over its border);
# - an SVG text outside its chart, or over another text of the chart (two labels slanted
#   alike are parallel: their upright boxes overlap where the text does not, so they pass;
#   marker labels, drawn with a halo over the lines, may cross each other's box too);
# - a page wider than the window.
OVERFLOW_JS = r"""
const out = [];
const name = el => el.tagName.toLowerCase()
  + (typeof el.className === 'string' && el.className ? '.' + el.className : '')
  + ' "' + (el.textContent || '').trim().slice(0, 60) + '"';
for (const el of document.querySelectorAll('body *')) {
  if (el instanceof SVGElement) continue;
  const style = getComputedStyle(el);
  if (style.display === 'none' || style.display === 'inline' || el.clientWidth === 0) continue;
  if (style.overflowX === 'auto' || style.overflowX === 'scroll') continue;
  if (el.scrollWidth > el.clientWidth + 1)
    out.push(`wider than its box: ${name(el)} (${el.scrollWidth} > ${el.clientWidth} px)`);
}
for (const svg of document.querySelectorAll('svg')) {
  const frame = svg.getBoundingClientRect();
  const texts = [...svg.querySelectorAll('text')];
  const boxes = texts.map(t => t.getBoundingClientRect());
  texts.forEach((t, i) => {
    const r = boxes[i];
    if (r.left < frame.left - 1 || r.right > frame.right + 1
        || r.top < frame.top - 1 || r.bottom > frame.bottom + 1)
      out.push(`outside its chart: ${name(t)} (x ${Math.round(r.left)}..${Math.round(r.right)}`
               + ` in ${Math.round(frame.left)}..${Math.round(frame.right)})`);
  });
  const plain = texts.map(t => !t.hasAttribute('paint-order'));
  for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
    if (!plain[i] || !plain[j]) continue;
    if (texts[i].getAttribute('transform') && texts[j].getAttribute('transform')) continue;
    const a = boxes[i], b = boxes[j];
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 1 && h > 1) out.push(`text over text: ${name(texts[i])} and ${name(texts[j])}`);
  }
}
if (document.documentElement.scrollWidth > window.innerWidth)
  out.push(`the page is wider than the window (${document.documentElement.scrollWidth} px)`);
return {width: window.innerWidth, faults: out};
"""


def require_browser() -> None:
    """Skip (or, in CI, fail) when Chromium and its driver are not installed."""
    require_programs(CHROMIUM, CHROMEDRIVER, switch="DISTILLERY_BROWSER_TESTS",
                     install="Debian: apt-get install chromium chromium-driver")


@contextmanager
def chromium(width: int = WIDTH, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium window of ``width`` CSS pixels, closed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # as root without a sandbox; no background traffic, which this closed network refuses
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def overflow_faults(page: Path, width: int = WIDTH) -> list[str]:
    """What overflows or overlaps in ``page`` at ``width`` pixels (empty: nothing)."""
    with chromium(width) as driver:
        driver.get(page.resolve().as_uri())
        found = driver.execute_script(OVERFLOW_JS)
    assert found["width"] == width, found  # the window is as wide as asked
    return list(found["faults"])
