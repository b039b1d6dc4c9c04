"""Hand-drawn inline SVG charts for ``distillery report``: no plotting dependency.

Every function returns an SVG fragment (a string) with a title, axes, tick labels and a
legend; every piece of text passes through ``html.escape``. Charts share one coordinate
frame (``Frame``) so that they line up in the page's grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH = 560
HEIGHT = 320
PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04",
           "#db2777", "#4b5563", "#65a30d"]
FONT = "font-family='system-ui, -apple-system, Segoe UI, Roboto, sans-serif'"

Fmt = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line of a line chart: points ``(x, y)``; a ``None`` y breaks the line."""

    name: str
    points: Sequence[tuple[float, float | None]]
    color: str = PALETTE[0]
    dashed: bool = False
    dots: bool = False


@dataclass(frozen=True)
class Bars:
    """One series of a grouped bar chart: a value per category (``None`` = no bar)."""

    name: str
    values: Sequence[float | None]
    color: str = PALETTE[0]


@dataclass(frozen=True)
class Frame:
    left: float = 62.0
    right: float = 18.0
    top: float = 44.0
    bottom: float = 62.0
    width: float = WIDTH
    height: float = HEIGHT
    legend_rows: int = field(default=0)

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom - 18 * self.legend_rows

    @property
    def base(self) -> float:
        return self.top + self.plot_h


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k"
    if abs(value) >= 1:
        return f"{value:.4g}"
    return f"{value:.2g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (1, 2, 2.5 or 5 times a power of ten)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def time_label(stamp: float, span: float) -> str:
    moment = datetime.fromtimestamp(stamp, UTC)
    if span < 300:
        return moment.strftime("%H:%M:%S")
    if span < 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M")


def _text(x: float, y: float, content: str, *, size: int = 11, anchor: str = "middle",
          color: str = "#374151", weight: str = "normal", extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
            f"fill='{color}' font-weight='{weight}' {extra}>{escape(content)}</text>")


def _open(title: str, frame: Frame) -> list[str]:
    return [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {frame.width:.0f} "
        f"{frame.height:.0f}' role='img' aria-label='{escape(title, quote=True)}' {FONT}>",
        f"<rect width='{frame.width:.0f}' height='{frame.height:.0f}' fill='#ffffff'/>",
        _text(frame.width / 2, 24, title, size=15, weight="600", color="#111827",
              extra=_squeeze(title, 15, frame.width - 24)),
    ]


def _squeeze(content: str, size: int, room: float) -> str:
    """Attributes that narrow a text to ``room`` when its estimated width would not fit."""
    estimate = 0.6 * size * len(content)  # a generous average glyph width for sans-serif
    if estimate <= room:
        return ""
    return f"textLength='{room:.0f}' lengthAdjust='spacingAndGlyphs'"


def _y_axis(frame: Frame, ticks: list[float], y_of: Callable[[float], float], fmt: Fmt,
            label: str) -> list[str]:
    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(f"<line x1='{frame.left:.1f}' x2='{frame.left + frame.plot_w:.1f}' "
                     f"y1='{y:.1f}' y2='{y:.1f}' stroke='#e5e7eb' stroke-width='1'/>")
        parts.append(_text(frame.left - 6, y + 4, fmt(tick), anchor="end", size=10))
    mid = frame.top + frame.plot_h / 2
    parts.append(_text(14, mid, label, size=11,
                       extra=f"transform='rotate(-90 14 {mid:.1f})'"))
    parts.append(f"<line x1='{frame.left:.1f}' x2='{frame.left:.1f}' y1='{frame.top:.1f}' "
                 f"y2='{frame.base:.1f}' stroke='#9ca3af'/>")
    parts.append(f"<line x1='{frame.left:.1f}' x2='{frame.left + frame.plot_w:.1f}' "
                 f"y1='{frame.base:.1f}' y2='{frame.base:.1f}' stroke='#9ca3af'/>")
    return parts


def _legend(frame: Frame, entries: list[tuple[str, str, bool]]) -> list[str]:
    """Legend under the x-axis label: ``(name, colour, dashed)`` per entry, wrapping rows."""
    parts: list[str] = []
    x, row = frame.left, 0
    y0 = frame.height - 12 - 18 * (frame.legend_rows - 1)
    for name, color, dashed in entries:
        width = 28 + 6.2 * len(name)
        if x + width > frame.width - frame.right and x > frame.left:
            x, row = frame.left, row + 1
        y = y0 + 18 * row
        dash = " stroke-dasharray='5 3'" if dashed else ""
        parts.append(f"<line x1='{x:.1f}' x2='{x + 18:.1f}' y1='{y - 4:.1f}' y2='{y - 4:.1f}' "
                     f"stroke='{color}' stroke-width='3'{dash}/>")
        parts.append(_text(x + 22, y, name, anchor="start", size=11))
        x += width + 12
    return parts


def _legend_rows(names: list[str], frame: Frame) -> int:
    rows, x = 1, frame.left
    for name in names:
        width = 28 + 6.2 * len(name) + 12
        if x + width > frame.width - frame.right and x > frame.left:
            rows, x = rows + 1, frame.left
        x += width
    return rows if names else 0


def empty_chart(title: str, message: str = "No data yet") -> str:
    frame = Frame()
    parts = _open(title, frame)
    parts.append(f"<rect x='{frame.left}' y='{frame.top}' width='{frame.plot_w}' "
                 f"height='{frame.plot_h}' fill='#f9fafb' stroke='#e5e7eb' rx='6'/>")
    parts.append(_text(frame.width / 2, frame.top + frame.plot_h / 2 + 5, message, size=14,
                       color="#6b7280"))
    parts.append("</svg>")
    return "".join(parts)


def _x_time_axis(frame: Frame, lo: float, hi: float, x_of: Callable[[float], float],
                 label: str) -> list[str]:
    parts = []
    span = hi - lo
    count = 6 if span > 0 else 1
    for i in range(count):
        stamp = lo + span * i / max(1, count - 1)
        x = x_of(stamp)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{frame.base:.1f}' "
                     f"y2='{frame.base + 4:.1f}' stroke='#9ca3af'/>")
        anchor = "end" if i == count - 1 and count > 1 else "middle"  # the last stays inside
        parts.append(_text(x, frame.base + 17, time_label(stamp, span), size=10, anchor=anchor))
    parts.append(_text(frame.left + frame.plot_w / 2, frame.base + 36, label, size=11))
    return parts


def line_chart(title: str, series: Sequence[Series], *, y_label: str, x_label: str = "time (UTC)",
               y_fmt: Fmt = number, y_range: tuple[float, float] | None = None,
               markers: Sequence[tuple[float, str]] = ()) -> str:
    """A time-series line chart (x in epoch seconds) with optional vertical event markers."""
    xs = [x for s in series for x, y in s.points if y is not None]
    ys = [y for s in series for _, y in s.points if y is not None]
    if not xs:
        return empty_chart(title)
    frame = Frame(legend_rows=_legend_rows([s.name for s in series], Frame()))
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 30, hi + 30
    ticks = nice_ticks(*(y_range or (min(0.0, min(ys)), max(ys))))
    y_lo, y_hi = ticks[0], ticks[-1]

    def x_of(x: float) -> float:
        return frame.left + (x - lo) / (hi - lo) * frame.plot_w

    def y_of(y: float) -> float:
        return frame.base - (y - y_lo) / ((y_hi - y_lo) or 1.0) * frame.plot_h

    parts = _open(title, frame) + _y_axis(frame, ticks, y_of, y_fmt, y_label)
    parts += _x_time_axis(frame, lo, hi, x_of, x_label)
    for s in series:
        parts += _polyline(s, x_of, y_of)
    parts += _markers(frame, markers, lo, hi, x_of)
    parts += _legend(frame, [(s.name, s.color, s.dashed) for s in series])
    parts.append("</svg>")
    return "".join(parts)


def _markers(frame: Frame, markers: Sequence[tuple[float, str]], lo: float, hi: float,
             x_of: Callable[[float], float]) -> list[str]:
    parts = []
    for i, (stamp, label) in enumerate(markers):
        if not lo <= stamp <= hi:
            continue
        x = x_of(stamp)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{frame.top:.1f}' "
                     f"y2='{frame.base:.1f}' stroke='#6b7280' stroke-dasharray='2 3'/>")
        y = frame.top + 10 + 12 * (i % 3)
        fits = x + 3 + 0.6 * 9 * len(label) <= frame.width - 2  # else it reads leftwards
        parts.append(_text(x + 3 if fits else x - 3, y, label, size=9,
                           anchor="start" if fits else "end", color="#4b5563",
                           extra="stroke='#ffffff' stroke-width='3' paint-order='stroke'"))
    return parts


def _polyline(s: Series, x_of: Callable[[float], float],
              y_of: Callable[[float], float]) -> list[str]:
    parts: list[str] = []
    runs: list[list[str]] = [[]]
    for x, y in s.points:
        if y is None:
            runs.append([])
            continue
        runs[-1].append(f"{x_of(x):.1f},{y_of(y):.1f}")
    dash = " stroke-dasharray='6 4'" if s.dashed else ""
    for run in runs:
        if len(run) > 1:
            parts.append(f"<polyline points='{' '.join(run)}' fill='none' stroke='{s.color}' "
                         f"stroke-width='2.2' stroke-linejoin='round'{dash}/>")
        if s.dots or len(run) == 1:
            for point in run:
                px, py = point.split(",")
                parts.append(f"<circle cx='{px}' cy='{py}' r='3' fill='{s.color}'/>")
    return parts


def bar_chart(title: str, categories: Sequence[str], bars: Sequence[Bars], *, y_label: str,
              x_label: str, y_fmt: Fmt = number,
              y_range: tuple[float, float] | None = None) -> str:
    """Vertical bars, grouped by category, one colour per series."""
    values = [v for b in bars for v in b.values if v is not None]
    if not categories or not values:
        return empty_chart(title)
    # more than six categories are written slanted: the axis label goes under the longest
    drop = 12 + 2.7 * min(16, max(len(c) for c in categories)) if len(categories) > 6 else 16
    frame = Frame(bottom=max(62.0, drop + 36),
                  legend_rows=_legend_rows([b.name for b in bars], Frame()) if len(bars) > 1
                  else 0)
    ticks = nice_ticks(*(y_range or (0.0, max(values))))
    y_lo, y_hi = ticks[0], ticks[-1]

    def y_of(y: float) -> float:
        return frame.base - (y - y_lo) / ((y_hi - y_lo) or 1.0) * frame.plot_h

    parts = _open(title, frame) + _y_axis(frame, ticks, y_of, y_fmt, y_label)
    slot = frame.plot_w / len(categories)
    bar_w = min(40.0, slot * 0.8 / len(bars))
    step = max(1, math.ceil(len(categories) / 24))
    for i, name in enumerate(categories):
        left = frame.left + slot * i + (slot - bar_w * len(bars)) / 2
        for j, b in enumerate(bars):
            value = b.values[i] if i < len(b.values) else None
            if value is None:
                continue
            top = y_of(value)
            parts.append(f"<rect x='{left + j * bar_w:.1f}' y='{top:.1f}' width='{bar_w - 1:.1f}'"
                         f" height='{max(0.0, frame.base - top):.1f}' fill='{b.color}' rx='2'>"
                         f"<title>{escape(f'{b.name} {name}: {y_fmt(value)}')}</title></rect>")
        if i % step == 0:
            parts.append(_category_label(frame, slot, i, name, len(categories)))
    parts.append(_text(frame.left + frame.plot_w / 2, frame.base + drop + 16, x_label, size=11))
    if len(bars) > 1:
        parts += _legend(frame, [(b.name, b.color, False) for b in bars])
    parts.append("</svg>")
    return "".join(parts)


def _category_label(frame: Frame, slot: float, i: int, name: str, count: int) -> str:
    x = frame.left + slot * (i + 0.5)
    short = name if len(name) <= 16 else name[:15] + "…"
    if count > 6:
        y = frame.base + 12
        return _text(x, y, short, size=9, anchor="end",
                     extra=f"transform='rotate(-30 {x:.1f} {y:.1f})'")
    return _text(x, frame.base + 16, short, size=10)


def _heat(fraction: float) -> str:
    """White to deep blue."""
    fraction = max(0.0, min(1.0, fraction))
    r = round(239 - (239 - 30) * fraction)
    g = round(246 - (246 - 64) * fraction)
    b = round(255 - (255 - 175) * fraction)
    return f"rgb({r},{g},{b})"


def heatmap(title: str, labels: Sequence[str], matrix: Sequence[Sequence[int]], *,
            row_title: str, col_title: str) -> str:
    """A confusion matrix: cell colour is the row-normalised share, the text is the count."""
    if not labels or not any(any(row) for row in matrix):
        return empty_chart(title)
    n = len(labels)
    size = 640.0
    margin_left, margin_top = 130.0, 130.0
    cell = (size - margin_left - 20) / n
    # the column labels lean right over the last columns: room for them past the grid
    frame = Frame(width=size + 72, height=size + 30)
    parts = _open(title, frame)
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        y = margin_top + i * cell
        parts.append(_text(margin_left - 6, y + cell / 2 + 4, _short(labels[i]), size=10,
                           anchor="end"))
        for j, count in enumerate(row):
            x = margin_left + j * cell
            share = count / total
            parts.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{cell - 1:.1f}' "
                         f"height='{cell - 1:.1f}' fill='{_heat(share)}'>"
                         f"<title>{escape(f'{labels[i]} → {labels[j]}: {count}')}</title></rect>")
            if count:
                color = "#ffffff" if share > 0.55 else "#1f2937"
                parts.append(_text(x + cell / 2, y + cell / 2 + 4, str(count),
                                   size=max(8, min(12, int(cell / 3))), color=color))
    for j, name in enumerate(labels):
        x = margin_left + j * cell + cell / 2
        y = margin_top - 6
        parts.append(_text(x, y, _short(name), size=10, anchor="start",
                           extra=f"transform='rotate(-50 {x:.1f} {y:.1f})'"))
    grid_mid = margin_left + n * cell / 2
    parts.append(_text(grid_mid, margin_top + n * cell + 22, col_title, size=12, weight="600"))
    mid = margin_top + n * cell / 2
    parts.append(_text(16, mid, row_title, size=12, weight="600",
                       extra=f"transform='rotate(-90 16 {mid:.1f})'"))
    parts.append("</svg>")
    return "".join(parts)


def _short(name: str) -> str:
    return name if len(name) <= 18 else name[:17] + "…"

