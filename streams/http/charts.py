"""Server-rendered SVG charts for the rollout page: time series, on a linear or log scale.

Why SVG written by Python, not a charting library from npm: the page must come with no CDN
and no download, and stay fast for the longest rollout, a 2-hour one: 1,440 windows × 6
metrics × 2 arms. A chart's series is one ``<polyline>`` whose points are written with one
decimal (about 12 bytes a point: some 17 KB for 1,440 points, a few KB for a short
rollout), drawn by the browser's own SVG renderer with no script at all. For a 2-hour
rollout (1,440 windows, 6 metrics: 20 charts, 1,124 KB, 261 KB gzipped, written in about
0.3 s on this project's two loaded cores; page load times in ``docs/benchmarks.md``), the
series JSON a client-side library would need instead is about the same (1.05 MB, 200 KB
gzipped), so bytes do not decide it. What decides it: no library to ship, pin and serve
(uPlot is about 50 KB minified, Chart.js about 200 KB), no build step, no drawing in the
browser on every update, and one escaping function between the topics' text and the page.
An update is the server re-rendering the fragment and the page swapping it in (a few lines
of JS); the page polls with ``If-None-Match`` and gets a 304 until a verdict arrives.

The ``<svg>`` elements are written for HTML (the HTML parser puts them in the SVG
namespace), so they carry no ``xmlns`` and the page, and the backtest report that embeds
the same charts (:mod:`streams.offline.report`), hold no URL at all.

Every text is escaped with :func:`esc` (ids, names and reasons may come from anyone who can
write to the topics). Each series' polyline carries ``data-series`` and ``data-points``
(its number of points) so tests and people can check what is drawn against the JSON.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Band", "Chart", "EVENT_COLOURS", "Line", "LinearScale", "LogScale", "Rule", "esc", "render",
           "timeline_svg", "VERDICT_COLOURS", "y_extent"]

WIDTH, HEIGHT = 640, 170
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 10, 22

VERDICT_COLOURS = {"continue": "#adb5bd", "warmup": "#a5d8ff", "hold": "#f59f00", "promote": "#2f9e44",
                   "rollback": "#e03131"}
#: The timeline's other markers (:func:`streams.http.series.markers`).
EVENT_COLOURS = {"split": "#1c7ed6", "incident": "#ae3ec9"}


def esc(text: object) -> str:
    """``text`` safe inside HTML or SVG text and double- or single-quoted attributes."""
    return html.escape(str(text), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


@dataclass(frozen=True)
class LinearScale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi

    def __call__(self, v: float) -> float:
        span = self.hi - self.lo or 1.0
        t = min(max((v - self.lo) / span, 0.0), 1.0)
        return self.a + t * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        if self.hi <= self.lo:
            return [self.lo]
        raw = (self.hi - self.lo) / n
        step = 10 ** math.floor(math.log10(raw))
        step *= next(m for m in (1, 2, 5, 10) if step * m >= raw)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step + 1e-9) + 1)]


@dataclass(frozen=True)
class LogScale:
    """Base-10 log scale from ``lo`` to ``hi`` (both > 0); values outside are clamped to the edge."""

    lo: float
    hi: float
    a: float
    b: float

    def __post_init__(self) -> None:
        if not 0 < self.lo < self.hi:
            raise ValueError(f"a log scale needs 0 < lo < hi, got {self.lo!r}, {self.hi!r}")

    def __call__(self, v: float) -> float:
        if v <= 0:
            return self.a
        t = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        t = min(max(t, 0.0), 1.0)
        return self.a + t * (self.b - self.a)

    def ticks(self) -> list[float]:
        lo, hi = round(math.log10(self.lo)), round(math.log10(self.hi))
        step = max(1, math.ceil((hi - lo) / 6))
        return [10.0 ** k for k in range(lo, hi + 1, step)]

    @classmethod
    def around(cls, values: Sequence[float], must_show: Sequence[float], a: float, b: float,
               floor: float = 1e-6, span: float = 1e12) -> LogScale:
        """Whole decades covering ``values`` and ``must_show`` (thresholds), below ``floor``
        clamped, and at most ``span`` above the largest of ``must_show`` (overwhelming
        evidence is drawn at the top edge rather than squashing the threshold)."""
        pos = [v for v in (*values, *must_show) if v > 0]
        lo_v = max(min(pos, default=1.0), floor)
        hi_v = max(pos, default=10.0)
        if must_show:
            hi_v = min(hi_v, max(must_show) * span)
        lo = 10.0 ** math.floor(math.log10(min(lo_v, 1.0)))
        hi = 10.0 ** math.ceil(math.log10(max(hi_v * 1.0001, lo * 10)))
        return cls(lo, hi, a, b)


@dataclass(frozen=True)
class Line:
    """One series: ``values`` aligned with the chart's ``xs``; None is no point."""

    name: str  # data-series
    label: str
    values: Sequence[float | None]
    colour: str
    dash: str = ""


@dataclass(frozen=True)
class Band:
    """A shaded interval (the bracket): None as a lower bound is the bottom, as an upper the top."""

    name: str
    label: str
    lower: Sequence[float | None]
    upper: Sequence[float | None]
    colour: str


@dataclass(frozen=True)
class Rule:
    """A horizontal line at ``value`` (a threshold, a tolerance)."""

    name: str
    label: str
    value: float
    colour: str


@dataclass
class Chart:
    title: str
    xs: Sequence[int]  # epoch ms
    x0: int  # epoch ms of the chart's left edge (the rollout's start)
    lines: list[Line] = field(default_factory=list)
    band: Band | None = None
    rules: list[Rule] = field(default_factory=list)
    log: bool = False
    percent: bool = False  # tick labels as percentages
    marks: list[tuple[int, str]] = field(default_factory=list)  # (epoch ms, verdict): decision lines
    name: str = ""  # data-chart
    x_end: int | None = None  # epoch ms of the right edge (charts compared side by side); else the last x
    y_range: tuple[float, float] | None = None  # the y axis, fixed (charts compared side by side); else from the data


def _xscale(xs: Sequence[int], x0: int, x_end: int | None = None) -> LinearScale:
    hi = max([x0 + 1, *xs]) if x_end is None else max(x0 + 1, x_end)
    return LinearScale(x0, hi, LEFT, WIDTH - RIGHT)


def _yscale(c: Chart) -> LinearScale | LogScale:
    a, b = HEIGHT - BOTTOM, TOP
    if c.y_range is not None:
        lo, hi = c.y_range
        return LogScale(lo, hi, a, b) if c.log else LinearScale(lo, hi, a, b)
    values = [v for line in c.lines for v in line.values if v is not None]
    if c.band:
        values += [v for v in (*c.band.lower, *c.band.upper) if v is not None]
    rules = [r.value for r in c.rules]
    if c.log:
        return LogScale.around(values, rules, a, b)
    lo = min([*values, *rules], default=0.0)
    hi = max([*values, *rules], default=1.0)
    if c.percent:
        lo, hi = min(lo, -0.05), max(hi, 0.05)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return LinearScale(lo - pad, hi + pad, a, b)


def y_extent(c: Chart) -> tuple[float, float]:
    """The y axis ``render`` would draw ``c`` on (its ``y_range`` when set): the union of
    the extents of charts to compare is the ``y_range`` that puts them on the same axis."""
    scale = _yscale(c)
    return scale.lo, scale.hi


def _time_ticks(x0: float, x1: float, most: int = 7) -> list[float]:
    """Ticks at whole steps of minutes (or half minutes) since ``x0``, at most ``most``."""
    span = x1 - x0
    step = next((m * 60_000 for m in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 240) if span / (m * 60_000) < most),
                span / (most - 1) or 1.0)
    return [x0 + i * step for i in range(int(span // step) + 1)]


def _minutes(ms: float) -> str:
    m = ms / 60_000
    return f"{m:.0f} min" if m >= 10 or m == int(m) else f"{m:.1f} min"


def _label(v: float, c: Chart) -> str:
    if c.log:
        k = round(math.log10(v))
        return "1" if k == 0 else f"1e{k}"
    if c.percent:
        return f"{v:+.0%}" if v else "0"
    return f"{v:.3g}"


def _points(xs: Sequence[int], values: Sequence[float | None], x, y) -> list[str]:
    return [f"{_f(x(t))},{_f(y(v))}" for t, v in zip(xs, values) if v is not None]


def render(c: Chart) -> str:
    """The chart as one ``<svg>`` element."""
    x, y = _xscale(c.xs, c.x0, c.x_end), _yscale(c)
    out = [f'<svg class="chart" data-chart="{esc(c.name)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">'
           f'<title>{esc(c.title)}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
           'fill="#fff" stroke="#dee2e6"/>']
    ticks = y.ticks()
    for v in ticks:
        py = _f(y(v))
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py}" y2="{py}" stroke="#f1f3f5"/>'
                   f'<text x="{LEFT - 4}" y="{py}" dy="3" text-anchor="end" font-size="10" fill="#495057">'
                   f'{esc(_label(v, c))}</text>')
    for v in _time_ticks(x.lo, x.hi):
        px = _f(x(v))
        out.append(f'<text x="{px}" y="{HEIGHT - 6}" text-anchor="middle" font-size="10" fill="#495057">'
                   f'{esc(_minutes(v - c.x0))}</text>')
    if c.band is not None:
        out.append(_band(c, c.band, x, y))
    for r in c.rules:
        py = _f(y(r.value))
        out.append(f'<line class="rule" data-rule="{esc(r.name)}" data-value="{r.value:g}" x1="{LEFT}" '
                   f'x2="{WIDTH - RIGHT}" y1="{py}" y2="{py}" stroke="{esc(r.colour)}" stroke-dasharray="5 3">'
                   f'<title>{esc(r.label)}</title></line>')
    for at, kind in c.marks:
        px = _f(x(at))
        out.append(f'<line class="decision" data-kind="{esc(kind)}" data-at="{at}" x1="{px}" x2="{px}" y1="{TOP}" '
                   f'y2="{HEIGHT - BOTTOM}" stroke="{esc(VERDICT_COLOURS.get(kind, "#868e96"))}" stroke-width="1.5"/>')
    for line in c.lines:
        pts = _points(c.xs, line.values, x, y)
        dash = f' stroke-dasharray="{esc(line.dash)}"' if line.dash else ""
        out.append(f'<polyline class="series" data-series="{esc(line.name)}" data-points="{len(pts)}" fill="none" '
                   f'stroke="{esc(line.colour)}" stroke-width="1.5"{dash} points="{" ".join(pts)}">'
                   f'<title>{esc(line.label)}</title></polyline>')
    out.append("</svg>")
    return "".join(out)


def _band(c: Chart, band: Band, x, y) -> str:
    bottom, top = y.a, y.b
    upper, lower = [], []
    for t, lo, hi in zip(c.xs, band.lower, band.upper):
        px = _f(x(t))
        upper.append(f"{px},{_f(top if hi is None else y(hi))}")
        lower.append(f"{px},{_f(bottom if lo is None else y(lo))}")
    pts = " ".join(upper + lower[::-1])
    return (f'<polygon class="band" data-series="{esc(band.name)}" data-points="{len(upper)}" '
            f'fill="{esc(band.colour)}" fill-opacity="0.18" stroke="none" points="{pts}">'
            f'<title>{esc(band.label)}</title></polygon>')


def _kind(verdict: str | None, code: str | None) -> str:
    if verdict == "continue" and code == "warmup":
        return "warmup"
    return verdict if verdict in VERDICT_COLOURS else "continue"


def timeline_svg(name: str, title: str, tl: dict[str, list], x0: int, x1: int, window_ms: int = 5000,
                 events: Sequence[dict] = ()) -> str:
    """A strip of the verdicts over time: one rectangle per run of the same verdict, and a
    marker at the first verdict of each run of hold, promote, rollback or an override.

    ``events`` (``{"at", "kind", "label"}``, kinds of :data:`EVENT_COLOURS`) are drawn as
    circles above the strip: split changes and incidents.
    """
    height = 34
    x = LinearScale(x0, max(x1, x0 + 1), LEFT, WIDTH - RIGHT)
    out = [f'<svg class="timeline" data-timeline="{esc(name)}" data-points="{len(tl["seq"])}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img"><title>{esc(title)}</title>']
    runs: list[list] = []  # [kind, start_at, end_at, first index]
    for i, (at, verdict, code) in enumerate(zip(tl["at"], tl["verdict"], tl["code"])):
        if at is None:
            continue
        kind = _kind(verdict, code)
        if runs and runs[-1][0] == kind and tl["override"][runs[-1][3]] == tl["override"][i]:
            runs[-1][2] = at
        else:
            runs.append([kind, at - window_ms, at, i])
    for kind, start, end, _ in runs:
        left, right = x(max(start, x0)), x(end)
        out.append(f'<rect class="run" data-kind="{kind}" x="{_f(left)}" y="8" width="{_f(max(right - left, 1.0))}" '
                   f'height="14" fill="{VERDICT_COLOURS[kind]}"/>')
    for e in events:
        colour = EVENT_COLOURS.get(e["kind"], "#868e96")
        out.append(f'<g class="event" data-kind="{esc(e["kind"])}" data-at="{e["at"]}"><title>{esc(e["label"])}</title>'
                   f'<circle cx="{_f(x(e["at"]))}" cy="4" r="3.5" fill="{colour}"/></g>')
    for kind, _start, end, i in runs:
        overridden = tl["override"][i]
        if kind not in ("hold", "promote", "rollback") and not overridden:
            continue
        at = tl["at"][i]
        px = x(at)
        label = f"{tl['verdict'][i]} at seq {tl['seq'][i]}" + (" (override)" if overridden else "")
        if tl["code"][i]:
            label += f": {tl['code'][i]}"
        stroke = ' stroke="#7048e8" stroke-width="2"' if overridden else ""
        out.append(f'<g class="marker" data-kind="{esc(kind)}" data-at="{at}" data-override="{str(overridden).lower()}">'
                   f'<title>{esc(label)}</title><path d="M{_f(px)} 23 l-5 9 h10 z" fill="{VERDICT_COLOURS[kind]}"'
                   f'{stroke}/></g>')
    out.append("</svg>")
    return "".join(out)
