"""The backtest report: ``rumgate backtest … --report report.html``.

The same views as the live rollout page (:mod:`streams.http.pages`), drawn from the
verdict events a backtest made, as one HTML file that opens from disk with no server and
no network: the explanation of the final verdict in its own words, the verdict timeline,
per (metric, segment) the e-values against their thresholds, the measured effect with
the anytime-valid bracket and the cumulative estimates, the canary share, and the policy
(name, hash, YAML). One section per policy when the same data was judged by several,
side by side on the same axes: the same time range for all, and each chart's y axis the
union of that chart's across the policies, so a line in one section lies where the same
value would in the other.

Self-contained: the charts are SVG inline, the styles and the one small script inline and
allowed by their hashes in a ``<meta>`` Content-Security-Policy that allows nothing else
(no request can leave the page, not even for an icon). The page has no live-update
script (nothing to update) and no link that needs a server: the series behind every chart,
the JSON that ``GET /v1/rollouts/{id}/series`` would serve, sit in a
``<script type="application/json">`` block per policy, and each chart's "JSON" link saves
its part of that block as a file (the script's only job).

What the verdict events do not hold is not shown: per-window canary and baseline values
(a window's own p75, page views per arm) are in the window summaries the judge reads, not
in its verdicts.

>>> from detectors.policy import parse_policy
>>> from streams.offline.backtest import backtest_rollout
>>> rollout = backtest_rollout("shop-web", "r2", "r1", parse_policy("name: quick\\nmetrics:\\n  - metric: LCP\\n"))
>>> html = report_html([PolicyRun(rollout, [])], source="no data")
>>> "<svg" in html, "http:" in html or "https:" in html
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from detectors.rollout import Rollout
from detectors.windows import DEFAULT_WINDOW_MS
from streams.http import pages
from streams.http.charts import esc, y_extent
from streams.http.series import Series, build_series, series_json

__all__ = ["PolicyRun", "report_html", "write_report"]

_STYLE = pages.STYLE + """
body.wide{max-width:none}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(600px,1fr));gap:18px;align-items:start}
.run{border-top:3px solid #dee2e6;padding-top:4px}
"""

# Saves one chart's part of its policy's series block as a JSON file (a Blob: no request).
_SCRIPT = """
(function () {
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest ? ev.target.closest('a.json') : null;
    if (!a) { return; }
    ev.preventDefault();
    var data = JSON.parse(document.getElementById(a.getAttribute('data-block')).textContent);
    var metric = a.getAttribute('data-metric'), segment = a.getAttribute('data-segment');
    if (metric !== null) {
      data.metrics = data.metrics.filter(function (m) { return m.metric === metric && m.segment === segment; });
    }
    var url = URL.createObjectURL(new Blob([JSON.stringify(data)], {type: 'application/json'}));
    var save = document.createElement('a');
    save.href = url;
    save.download = a.getAttribute('data-name');
    document.body.appendChild(save);
    save.click();
    save.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  });
})();
"""

_CSP = (f"default-src 'none'; script-src {pages.source_hash(_SCRIPT)}; style-src {pages.source_hash(_STYLE)}; "
        "img-src data:; base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class PolicyRun:
    """One policy's backtest of the data: the rollout it judged and the verdict events it made.

    ``events`` are the verdict events as ``--output`` writes them (``Verdict.to_dict()``),
    dry-run policies' among them; ``beacons`` and ``late`` are the run's counts.
    """

    rollout: Rollout
    events: Sequence[dict]
    beacons: int = 0
    late: int = 0


def _series(run: PolicyRun) -> Series:
    enforcing = [e for e in run.events if not (e.get("policy") or {}).get("dry_run")]
    dry: dict[str, list[dict]] = {p.name: [] for p in run.rollout.dry_run_policies}
    for e in run.events:
        policy = e.get("policy") or {}
        if policy.get("dry_run"):
            dry.setdefault(str(policy.get("name")), []).append(e)
    return build_series(run.rollout, enforcing, dry)


def _x_range(series: Sequence[Series], window_ms: int) -> tuple[int, int]:
    """From the rollouts' start (a file backtest's, started at 0, from its first window) to the last verdict."""
    starts, ends = [], []
    for s in series:
        ats = [a for a in s.timeline["at"] if a is not None]
        ats += [a for tl in s.dry_runs.values() for a in tl["at"] if a is not None]
        if s.rollout.started_at > 0:
            starts.append(s.rollout.started_at)
        elif ats:
            starts.append(min(ats) - window_ms)
        ends += ats
    x0 = min(starts, default=0)
    return x0, max([x0 + 60_000, *ends])


def _y_ranges(series: Sequence[Series], x_range: tuple[int, int]) -> dict[str, tuple[float, float]]:
    """Each chart's y axis over every section that draws it: the union of their extents."""
    out: dict[str, tuple[float, float]] = {}
    for s in series:
        for chart in pages.fragment_charts(s, x_range):
            lo, hi = y_extent(chart)
            if chart.name in out:
                lo, hi = min(lo, out[chart.name][0]), max(hi, out[chart.name][1])
            out[chart.name] = (lo, hi)
    return out


def _json_block(block: str, s: Series) -> str:
    data = orjson.dumps(series_json(s)).decode()
    # Inside <script>, nothing may close it or open a comment; JSON's \\u escapes keep the text.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{block}" class="series">{data}</script>'


def _json_link(block: str, policy: str):
    def link(metric: str | None, segment: str | None) -> str:
        if metric is None:
            return (f'<a class="json" href="#{block}-note" data-block="{block}" '
                    f'data-name="{esc(policy)}-series.json">JSON</a>')
        return (f'<a class="json" href="#{block}-note" data-block="{block}" data-metric="{esc(metric)}" '
                f'data-segment="{esc(segment)}" data-name="{esc(policy)}-{esc(metric)}-{esc(segment)}.json">JSON</a>')
    return link


def _decision(s: Series, x0: int) -> tuple[str, str]:
    """The final verdict's kind, and when it was first reached in its last run."""
    tl = s.timeline
    if not tl["verdict"]:
        return "no verdict", "–"
    kind, i = tl["verdict"][-1], len(tl["verdict"]) - 1
    while i > 0 and tl["verdict"][i - 1] == kind:
        i -= 1
    elapsed = tl["at"][i] - x0 if tl["at"][i] is not None else None
    after = f" (after {elapsed / 60_000:.1f} min)" if elapsed is not None else ""
    return str(kind), f"{pages.when(tl['at'][i])}{after}, seq {tl['seq'][i]}"


def _summary(runs: Sequence[PolicyRun], series: Sequence[Series], x0: int) -> str:
    rows = []
    for i, (run, s) in enumerate(zip(runs, series)):
        kind, since = _decision(s, x0)
        reasons = (s.latest or {}).get("reasons") or ["no verdict: no window held data for the app"]
        rows.append(f'<tr data-policy="{esc(run.rollout.policy.name)}"><td><a href="#run-{i + 1}">'
                    f'{esc(run.rollout.policy.name)}</a>{" (decides the exit code)" if i == 0 else ""}</td>'
                    f'<td><code>{esc(run.rollout.policy.hash[:19])}…</code></td><td class="verdict-kind">{esc(kind)}</td>'
                    f'<td>{since}</td><td>{len(s.events)}</td><td>{run.beacons:,}</td><td>{run.late:,}</td>'
                    f'<td>{esc(reasons[0])}</td></tr>')
    return ('<table class="summary"><tr><th>policy</th><th>hash</th><th>final verdict</th><th>since</th>'
            f'<th>windows judged</th><th>beacons</th><th>late</th><th>why</th></tr>{"".join(rows)}</table>')


def report_html(runs: Sequence[PolicyRun], *, source: str, window_ms: int = DEFAULT_WINDOW_MS) -> str:
    """The report of ``runs`` (one per policy, over the same data) as one HTML document.

    ``source`` says what was judged (files, or a topic and its range), shown as text.
    """
    if not runs:
        raise ValueError("a report needs at least one policy's run, got none")
    series = [_series(r) for r in runs]
    x_range = _x_range(series, window_ms)
    y_ranges = _y_ranges(series, x_range) if len(series) > 1 else None
    first = runs[0].rollout
    sections = []
    for i, (run, s) in enumerate(zip(runs, series), 1):
        block = f"series-{i}"
        fragment = pages.rollout_fragment(s, json_link=_json_link(block, run.rollout.policy.name), live=False,
                                          x_range=x_range, y_ranges=y_ranges)
        sections.append(
            f'<section class="run" id="run-{i}" data-policy="{esc(run.rollout.policy.name)}">'
            f'<h2>{i}. policy {esc(run.rollout.policy.name)} <small><code>{esc(run.rollout.policy.hash[:19])}…</code>'
            f'</small></h2>{fragment}{pages.policy_section(run.rollout, "h3")}'
            f'<p class="muted" id="{block}-note">The series behind these charts (what '
            f'<code>GET /v1/rollouts/{{id}}/series</code> serves live) are in this file, in the '
            f'<code>&lt;script type="application/json" id="{block}"&gt;</code> block; each JSON link saves its part.'
            f'</p>{_json_block(block, s)}</section>')
    title = f"rumgate backtest: {first.app} {first.canary} against {first.baseline}"
    head = (f'<h1>{esc(title)}</h1><p>app {esc(first.app)}: canary <b>{esc(first.canary)}</b> against baseline '
            f'<b>{esc(first.baseline)}</b> · {esc(source)} · from {pages.when(x_range[0])} to {pages.when(x_range[1])}'
            + (f" · expected canary share {first.expected_share:.1%}" if first.expected_share else "")
            + f' · {len(runs)} polic{"y" if len(runs) == 1 else "ies"}, on the same data</p>'
            '<p class="muted">A backtest report: no server, no network, everything is in this file.</p>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}"><title>{esc(title)}</title>'
            '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f'<style>{_STYLE}</style></head><body class="{"wide" if len(runs) > 1 else "single"}">{head}'
            f'{_summary(runs, series, x_range[0])}<div class="runs">{"".join(sections)}</div>'
            f'<script>{_SCRIPT}</script></body></html>')


def write_report(path: str | Path, runs: Sequence[PolicyRun], *, source: str,
                 window_ms: int = DEFAULT_WINDOW_MS) -> int:
    """Write :func:`report_html` to ``path``; return its size in bytes."""
    data = report_html(runs, source=source, window_ms=window_ms).encode()
    Path(path).write_bytes(data)
    return len(data)
