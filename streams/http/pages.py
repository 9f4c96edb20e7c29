"""The rollout pages every worker serves: ``GET /`` (the rollouts, each with its latest
verdict) and ``GET /rollouts/{id}`` (one rollout, live).

The page of a rollout shows, from its verdict history (:mod:`streams.http.series`, also
served as JSON at ``/v1/rollouts/{id}/series``):

* the latest verdict with its explanation exactly as the event states it (reasons and
  their codes, overrides on record, the evidence per metric, data quality);
* the verdict timeline of the enforcing policy and of each dry-run policy, with markers at
  hold, promote, rollback and overrides, and the warm-up drawn apart; above the enforcing
  one, the split changes and the global incidents;
* per (metric, segment): the rollback, "worse at all" and promote e-values against their
  thresholds on a log scale; the measured effect with the anytime-valid bracket as it
  narrows, against the tolerances; canary and baseline per window and cumulative;
* data quality: the canary's share so far against the expected share (which steps at each
  split change), and each window's page views per arm;
* the policy (name, hash, the resolved policy as YAML) and links to the JSON of every chart.

Charts are SVG written here (:mod:`streams.http.charts` says why). Nothing here needs the
HTTP backend but the two routes: :func:`render_rollout` makes the whole page of a rollout
from the rollout and its verdict events, and :func:`rollout_fragment` takes where its
"JSON" links go, a fixed time range and fixed y axes, so the backtest report
(:mod:`streams.offline.report`) draws the same views into one file. The page updates itself
with a few lines of plain JS: every :data:`REFRESH_S` seconds it fetches
``/rollouts/{id}?fragment=1`` (the same HTML without the page around it) and swaps it in,
until the rollout has ended or is decided. No framework, no CDN, nothing downloaded; the
script and the styles are inline and allowed by their hashes in the page's
Content-Security-Policy, which allows nothing else (no other script can run, even if some
text escaped escaping).

The pages are reads: they follow the API's rules (:mod:`streams.http.auth`), so a browser
sees them when ``RUMGATE_API_READ_OPEN=true`` or through a proxy that adds the token.
Every text shown is escaped (:func:`streams.http.charts.esc`).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import yaml
from aiohttp import web

from detectors.beacon import _TS_MAX
from detectors.rollout import MAX_ID, Rollout, name_problem
from streams.http import auth
from streams.http.backend import Backend, backend_of
from streams.http.charts import EVENT_COLOURS, VERDICT_COLOURS, Band, Chart, Line, Rule, esc, render, timeline_svg
from streams.http.series import Series, build_series, dry_run_key, load

__all__ = ["REFRESH_S", "ROUTES", "STYLE", "JsonLink", "api_json_link", "fragment_charts", "index_fragment",
           "policy_section", "render_rollout", "rollout_fragment", "rollout_head", "rollout_path", "source_hash", "when"]

#: Where the "JSON" link of a chart goes: ``(metric, segment)`` (both None: the rollout's
#: whole series, its data quality included) to the ``<a>`` element.
JsonLink = Callable[[str | None, str | None], str]

REFRESH_S = 3

_SCRIPT = """
(function () {
  var live = document.getElementById('live');
  var status = document.getElementById('live-status');
  var every = Number(live.getAttribute('data-every')) * 1000;
  var last = null;
  function schedule() {
    if (live.querySelector('[data-live="1"]')) { setTimeout(tick, every); }
    else { status.textContent = 'not updating: the rollout has ended or is decided'; }
  }
  function tick() {
    fetch(live.getAttribute('data-src'), {cache: 'no-cache', credentials: 'same-origin'})
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.text(); })
      .then(function (html) {
        if (html !== last) { live.innerHTML = html; last = html; }
        status.textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
      })
      .catch(function (e) { status.textContent = 'update failed (' + e.message + '); retrying'; })
      .then(schedule);
  }
  schedule();
})();
"""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1340px;padding:12px 20px;color:#212529}
h1{font-size:20px;margin:4px 0}h2{font-size:17px;margin:8px 0}h3{font-size:15px;margin:14px 0 4px}
small,.muted{color:#6c757d}code{font-size:12px}a{color:#1c7ed6}
table{border-collapse:collapse;margin:6px 0}td,th{border-bottom:1px solid #e9ecef;padding:2px 8px;text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:6px}.charts figure{margin:0;flex:1 1 400px;max-width:640px}
figcaption{font-size:12px;color:#495057}svg{width:100%;height:auto}
.verdict{border-left:6px solid #adb5bd;padding:2px 12px;margin:8px 0;background:#f8f9fa}
.v-rollback{border-color:#e03131}.v-promote{border-color:#2f9e44}.v-hold{border-color:#f59f00}
.key span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}
.k-continue{background:#adb5bd}.k-warmup{background:#a5d8ff}.k-hold{background:#f59f00}
.k-promote{background:#2f9e44}.k-rollback{background:#e03131}
.k-split,.k-incident{border-radius:50%}.k-split{background:#1c7ed6}.k-incident{background:#ae3ec9}
pre{background:#f8f9fa;padding:8px;overflow:auto;max-height:300px}
.strip{margin:6px 0 0;font-size:12px;color:#495057}
"""


def source_hash(text: str) -> str:
    """The CSP source (``'sha256-…'``) that allows exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSP = (f"default-src 'none'; script-src {source_hash(_SCRIPT)}; style-src {source_hash(STYLE)}; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def rollout_path(rollout_id: str) -> str:
    """The page of a rollout (``/`` and ``+`` percent-encoded, as every route of the API takes them)."""
    return "/rollouts/" + quote(rollout_id, safe=":@")


def _api_path(rollout_id: str, tail: str = "", **query: str) -> str:
    path = "/v1/rollouts/" + quote(rollout_id, safe=":@") + tail
    return path + ("?" + urlencode(query) if query else "")


def _html(body: str, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


def _page_html(title: str, head: str, fragment: str, src: str, tail: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            '<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f'<style>{STYLE}</style></head><body>{head}'
            f'<p class="muted" id="live-status">live: updated every {REFRESH_S} s</p>'
            f'<div id="live" data-src="{esc(src)}" data-every="{REFRESH_S}">{fragment}</div>{tail}'
            f'<script>{_SCRIPT}</script></body></html>')


def _page(title: str, head: str, fragment: str, src: str, tail: str = "") -> web.Response:
    resp = _html(_page_html(title, head, fragment, src, tail))
    resp.enable_compression()
    return resp


def when(ms: Any) -> str:
    """Epoch ms as a UTC time, ``–`` for anything else."""
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= _TS_MAX:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt(v: Any, pct: bool = False) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–" if v is None else esc(v)
    if pct:
        return f"{v:+.1%}"
    return f"{v:.4g}"


def _quality_value(v: Any) -> str:
    """A data-quality figure: a number, ``canary 98 / baseline 407``, or a list joined by commas."""
    if isinstance(v, dict):
        return " / ".join(f"{esc(k)} {_fmt(x)}" for k, x in v.items()) or "–"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v) or "–"
    return _fmt(v)


# -- the list ---------------------------------------------------------------------------------


def index_fragment(backend: Backend) -> str:
    rows = []
    for r in sorted(backend.rollouts.values(), key=lambda r: (-r.started_at, r.id)):
        v = backend.latest.get(r.id)
        verdict = v.get("verdict") if isinstance(v, dict) else None
        reasons = v.get("reasons") if isinstance(v, dict) else None
        reason = reasons[0] if isinstance(reasons, list) and reasons else "no verdict yet"
        dry = ", ".join(f"{esc(p.name)}: {esc((backend.latest.get(dry_run_key(r.id, p.name)) or {}).get('verdict', '–'))}"
                        for p in r.dry_run_policies)
        rows.append(f'<tr data-rollout="{esc(r.id)}"><td><a href="{esc(rollout_path(r.id))}">{esc(r.id)}</a></td>'
                    f'<td>{esc(r.app)}</td><td>{esc(r.canary)}</td><td>{esc(r.baseline)}</td>'
                    f'<td>{when(r.started_at)}</td><td>{"running" if r.ended_at is None else "ended " + when(r.ended_at)}</td>'
                    f'<td class="verdict-kind">{esc(verdict or "–")}</td><td>{esc(reason)}</td>'
                    f'<td>{esc(r.policy.name)}</td><td>{dry or "–"}</td></tr>')
    if not rows:
        return '<div class="fragment" data-live="1"><p>No rollouts yet. Start one with <code>rumgate rollout start</code> ' \
               'or <code>POST /v1/rollouts</code>.</p></div>'
    return ('<div class="fragment" data-live="1"><table><thead><tr><th>rollout</th><th>app</th><th>canary</th>'
            '<th>baseline</th><th>started</th><th>state</th><th>verdict</th><th>why</th><th>policy</th>'
            f'<th>dry runs</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


@auth.read
async def index(request: web.Request) -> web.Response:
    fragment = index_fragment(backend_of(request))
    if request.query.get("fragment") == "1":
        return _html(fragment)
    head = ('<h1>rumgate: rollouts</h1><p class="muted">Each with its latest verdict; the JSON is at '
            '<a href="/v1/rollouts">/v1/rollouts</a>.</p>')
    return _page("rumgate: rollouts", head, fragment, "/?fragment=1")


# -- one rollout ------------------------------------------------------------------------------


def _explanation(s: Series) -> str:
    v = s.latest
    if not isinstance(v, dict):
        return ('<section class="verdict"><h2>continue <small>no verdict yet</small></h2>'
                '<p>no verdict yet: no window of this rollout has been judged</p></section>')
    kind = v.get("verdict") if isinstance(v.get("verdict"), str) else "?"
    reasons = v.get("reasons") if isinstance(v.get("reasons"), list) else []
    codes = v.get("reason_codes") if isinstance(v.get("reason_codes"), list) else []
    items = "".join(f'<li><code>{esc(codes[i]) if i < len(codes) else ""}</code> {esc(r)}</li>'
                    for i, r in enumerate(reasons))
    elapsed = (v.get("inputs") or {}).get("elapsed_ms") if isinstance(v.get("inputs"), dict) else None
    after = f" · after {elapsed / 60_000:.1f} min" if isinstance(elapsed, (int, float)) else ""
    policy = v.get("policy") if isinstance(v.get("policy"), dict) else {}
    out = [f'<section class="verdict v-{esc(kind)}" data-verdict="{esc(kind)}" data-seq="{esc(v.get("seq"))}">',
           f'<h2>{esc(kind)} <small>severity {esc(v.get("severity", "–"))} · seq {esc(v.get("seq"))} · '
           f'{when(v.get("at"))}{after} · policy {esc(policy.get("name", "–"))} '
           f'<code>{esc(str(policy.get("hash", ""))[:19])}…</code></small></h2>',
           f'<ol class="reasons">{items}</ol>']
    overrides = v.get("overrides") if isinstance(v.get("overrides"), list) else []
    if overrides:
        rows = "".join(f'<tr><td>{esc(o.get("action"))}</td><td>{esc(o.get("actor"))}</td><td>{esc(o.get("reason"))}</td>'
                       f'<td>{esc(o.get("ticket") or "–")}</td><td>{when(o.get("at"))}</td>'
                       f'<td>{when(o.get("expires_at")) if o.get("expires_at") else "never"}</td>'
                       f'<td>{"active" if o.get("active") else "not active"}</td></tr>'
                       for o in overrides if isinstance(o, dict))
        out.append('<h3>Overrides</h3><table class="overrides"><tr><th>action</th><th>actor</th><th>reason</th>'
                   f'<th>ticket</th><th>at</th><th>expires</th><th></th></tr>{rows}</table>')
    metrics = v.get("metrics") if isinstance(v.get("metrics"), list) else []
    rows = "".join(
        f'<tr><td>{esc(m.get("name"))}</td><td>{esc(m.get("status"))}</td><td>{_fmt(m.get("canary"))}</td>'
        f'<td>{_fmt(m.get("baseline"))}</td><td>{_fmt(m.get("ratio"))}</td>'
        f'<td>{_fmt(m.get("worse_by_at_least"), True)} / {_fmt(m.get("not_worse_than"), True)}</td>'
        f'<td>{_fmt(m.get("e_rollback"))} / {_fmt(m.get("threshold_rollback"))}</td>'
        f'<td>{_fmt(m.get("e_promote"))} / {_fmt(m.get("threshold_promote"))}</td>'
        f'<td>{_fmt(m.get("n_canary"))} / {_fmt(m.get("n_baseline"))}</td></tr>'
        for m in metrics if isinstance(m, dict))
    out.append('<table class="evidence"><tr><th>metric</th><th>status</th><th>canary</th><th>baseline</th><th>ratio</th>'
               '<th>worse by at least / not worse than</th><th>e rollback / threshold</th>'
               f'<th>e promote / threshold</th><th>n canary / baseline</th></tr>{rows}</table>')
    dq = v.get("data_quality") if isinstance(v.get("data_quality"), dict) else {}
    if dq:
        cells = "".join(f"<td>{esc(k)}: {_quality_value(val)}</td>" for k, val in dq.items())
        out.append(f'<table class="quality"><tr><th>data quality</th>{cells}</tr></table>')
    out.append("</section>")
    return "".join(out)


def _decisions(tl: dict[str, list]) -> list[tuple[int, str]]:
    """(time, verdict) of the first verdict of each run of promote or rollback."""
    marks, last = [], None
    for at, verdict in zip(tl["at"], tl["verdict"]):
        if verdict in ("promote", "rollback") and verdict != last and at is not None:
            marks.append((at, verdict))
        last = verdict
    return marks


def _x_range(s: Series) -> tuple[int, int]:
    ats = [a for a in s.timeline["at"] if a is not None]
    ats += [a for tl in s.dry_runs.values() for a in tl["at"] if a is not None]
    x0 = min([s.rollout.started_at, *(a - 5000 for a in ats)])
    return x0, max([x0 + 60_000, *ats])


def _rules(m: dict[str, Any], what: str, fmt: str) -> list[Rule]:
    """The rollback and promote lines of one kind (``threshold`` or ``tolerance``) a metric has."""
    out = []
    for side, colour in (("rollback", "#e03131"), ("promote", "#2f9e44")):
        name = f"{what}_{side}" if what == "threshold" else f"{side}_{what}"
        if m[name] is not None:
            out.append(Rule(name, f"{side} {what} {m[name]:{fmt}}", m[name], colour))
    return out


def api_json_link(rollout_id: str) -> JsonLink:
    """The live page's "JSON" links: the series endpoint, for one chart or the whole rollout."""
    def link(metric: str | None, segment: str | None) -> str:
        query = {} if metric is None else {"metric": metric, "segment": segment or "all"}
        return f'<a href="{esc(_api_path(rollout_id, "/series", **query))}">JSON</a>'
    return link


def _metric_charts(m: dict[str, Any], x0: int, marks: list[tuple[int, str]]) -> tuple[Chart, Chart, Chart]:
    """The evidence, effect and estimates charts of one (metric, segment)."""
    key = f"{m['metric']}/{m['segment']}"
    xs = m["at"]
    rules = _rules(m, "threshold", "g")
    evidence = Chart(f"{m['name']}: e-values against their thresholds (log scale)", xs, x0, log=True, rules=rules,
                     marks=marks, name=f"{key}/evidence", lines=[
                         Line("e_rollback", "rollback e-value (at the rollback tolerance)", m["e_rollback"], "#e03131"),
                         Line("e_worse", "worse-at-all e-value (the fast path)", m["e_worse"], "#f76707", "4 3"),
                         Line("e_promote", "promote e-value (at the promote tolerance)", m["e_promote"], "#2f9e44")])
    tol = _rules(m, "tolerance", "+.0%")
    effect = Chart(f"{m['name']}: canary against baseline, with the anytime-valid bracket", xs, x0, percent=True,
                   rules=[Rule("zero", "no difference", 0.0, "#868e96"), *tol], marks=marks, name=f"{key}/effect",
                   lines=[Line("effect", "measured effect (canary / baseline − 1, cumulative)", m["effect"], "#212529")],
                   band=Band("bracket", "worse by at least … / not worse than … (proven, anytime-valid)",
                             m["worse_by_at_least"], m["not_worse_than"], "#1c7ed6"))
    estimates = Chart(f"{m['name']}: canary and baseline, per window and cumulative", xs, x0, marks=marks,
                      name=f"{key}/estimates", lines=[
        Line("window_canary", "canary (this window alone)", m["window_canary"], "#ffc078", "2 2"),
        Line("window_baseline", "baseline (this window alone)", m["window_baseline"], "#74c0fc", "2 2"),
        Line("canary", "canary (all windows so far)", m["canary"], "#f76707"),
        Line("baseline", "baseline (all windows so far)", m["baseline"], "#1c7ed6")])
    return evidence, effect, estimates


def _share_chart(s: Series, x0: int, marks: list[tuple[int, str]]) -> Chart:
    q = s.quality
    return Chart("canary share of page views (all windows so far) against the expected share", q["at"], x0,
                 lines=[Line("canary_share", "canary share of page views so far", q["canary_share"], "#f76707"),
                        Line("expected_share", "expected share (as the split had it at each window)",
                             q["expected_share"], "#2f9e44", "5 3")],
                 marks=marks, name="quality/canary_share")


def _views_chart(s: Series, x0: int, marks: list[tuple[int, str]]) -> Chart:
    q = s.quality
    return Chart("page views per window, canary and baseline", q["at"], x0, marks=marks, name="quality/page_views",
                 lines=[Line("views_canary", "canary page views (this window)", q["views_canary"], "#f76707"),
                        Line("views_baseline", "baseline page views (this window)", q["views_baseline"], "#1c7ed6"),
                        Line("late_window", "late beacons (this window, both arms)", q["late_window"], "#868e96", "2 2")])


def fragment_charts(s: Series, x_range: tuple[int, int] | None = None) -> list[Chart]:
    """Every chart :func:`rollout_fragment` draws for ``s``, each named (``LCP/all/evidence``,
    ``quality/canary_share``): what a caller putting several rollouts on the same axes reads."""
    x0, _ = x_range or _x_range(s)
    marks = _decisions(s.timeline)
    out = [c for m in s.metrics for c in _metric_charts(m, x0, marks)]
    return out + ([_share_chart(s, x0, marks), _views_chart(s, x0, marks)] if s.events else [])


def _fixed(c: Chart, x_end: int | None, y_ranges: Mapping[str, tuple[float, float]] | None) -> Chart:
    return replace(c, x_end=x_end, y_range=(y_ranges or {}).get(c.name))


def _metric_panel(m: dict[str, Any], charts: tuple[Chart, Chart, Chart], link: str) -> str:
    evidence, effect, estimates = charts
    key = f"{m['metric']}/{m['segment']}"
    status = next((st for st in reversed(m["status"]) if st), "–")
    return (f'<section class="metric" data-metric="{esc(key)}" data-points="{len(m["at"])}"><h3>{esc(m["name"])} '
            f'<small>{esc(status)} · {link}</small></h3><div class="charts">'
            f'<figure>{render(evidence)}<figcaption>red: rollback e-value, orange dashed: worse at all, green: promote; '
            'dashed lines: their thresholds</figcaption></figure>'
            f'<figure>{render(effect)}<figcaption>black: measured effect; blue band: the bracket (no lower edge: not '
            'proven worse at all; no upper edge: not yet proven within any tolerance); dashed: tolerances</figcaption>'
            '</figure>'
            f'<figure>{render(estimates)}<figcaption>orange: canary, blue: baseline; solid: {esc(m["statistic"] or "")} '
            'over every window so far (what the gate tests), dotted: each window alone</figcaption></figure>'
            '</div></section>')


def _quality_panel(share: Chart, views: Chart, link: str) -> str:
    return (f'<h3>Data quality <small>{link} (quality)</small></h3><div class="charts"><figure>'
            f'{render(share)}<figcaption>orange: the canary\'s share of page views so far; green dashed: the expected '
            'share (when the rollout names one), stepping at each split change; late beacons and the sample-ratio '
            'e-value are in the table above</figcaption></figure>'
            f'<figure>{render(views)}<figcaption>page views of each window: orange canary, blue baseline (warm-up '
            'included); grey dotted: the late beacons each window added</figcaption></figure></div>')


def rollout_fragment(s: Series, *, json_link: JsonLink | None = None, live: bool | None = None,
                     x_range: tuple[int, int] | None = None,
                     y_ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The live part of a rollout's page (what ``?fragment=1`` serves).

    ``json_link`` makes each chart's "JSON" link (by default :func:`api_json_link`); ``live``
    replaces ``s.live`` (whether the page keeps polling); ``x_range`` (epoch ms) and
    ``y_ranges`` (by chart name, see :func:`fragment_charts`) fix the axes (the charts'
    time axes then end at ``x_range``'s end, as the timeline does), so rollouts drawn
    side by side can be compared at a glance.
    """
    r = s.rollout
    link = json_link or api_json_link(r.id)
    x0, x1 = x_range or _x_range(s)
    x_end = None if x_range is None else x1  # the live page's charts end at their last point
    strips = [f'<p class="strip">{esc(r.policy.name)} (enforcing)</p>'
              + timeline_svg("enforcing", f"verdicts of {r.policy.name}", s.timeline, x0, x1,
                             events=[m for m in s.markers if x0 <= m["at"] <= x1])]
    strips += [f'<p class="strip">dry run: {esc(name)}</p>'
               + timeline_svg(f"dry-run:{name}", f"verdicts of dry run {name}", tl, x0, x1)
               for name, tl in s.dry_runs.items()]
    key = "".join(f'<span class="k-{k}"></span>{k}' for k in (*VERDICT_COLOURS, *EVENT_COLOURS))
    # fragment_charts' order: three charts per (metric, segment), then the two quality charts
    charts = [_fixed(c, x_end, y_ranges) for c in fragment_charts(s, (x0, x1))]
    panels = "".join(_metric_panel(m, tuple(charts[3 * i:3 * i + 3]), link(m["metric"], m["segment"]))  # type: ignore[arg-type]
                     for i, m in enumerate(s.metrics))
    share = _quality_panel(*charts[3 * len(s.metrics):], link(None, None)) if s.events else ""
    seq = (s.latest or {}).get("seq", 0)
    live = s.live if live is None else live
    return (f'<div class="fragment" data-live="{1 if live else 0}" data-seq="{esc(seq)}" '
            f'data-windows="{len(s.events)}">{_explanation(s)}'
            f'<h3>Verdicts over time <small>({len(s.events)} windows judged)</small></h3>{"".join(strips)}'
            f'<p class="key muted">{key}; ▲ markers: hold, promote, rollback, overrides (outlined); ● above the '
            f'strip: split changes, global incidents</p>{share}'
            f'{panels or "<p>No evidence yet: no window has been judged.</p>"}</div>')


def policy_section(r: Rollout, heading: str = "h2") -> str:
    """The rollout's policy: name, hash, and the resolved policy as YAML (and its dry runs)."""
    text = yaml.safe_dump(r.policy.to_dict(), sort_keys=False, allow_unicode=True)
    dry = "".join(f"<li>{esc(p.name)} <code>{esc(p.hash)}</code></li>" for p in r.dry_run_policies)
    return (f'<{heading}>Policy</{heading}><p class="policy">{esc(r.policy.name)} <code>{esc(r.policy.hash)}</code>'
            f'{" (dry run)" if r.policy.dry_run else ""}</p>'
            + (f"<p>Dry-run policies:</p><ul>{dry}</ul>" if dry else "")
            + f'<details><summary>resolved policy (YAML)</summary><pre class="policy-yaml">{esc(text)}</pre></details>')


def rollout_head(r: Rollout) -> str:
    """What the rollout is: app, canary, baseline, start, state and expected share."""
    state = "running" if r.ended_at is None else f"ended {when(r.ended_at)}"
    return (f'<p>app {esc(r.app)}: canary <b>{esc(r.canary)}</b> against baseline '
            f'<b>{esc(r.baseline)}</b> · started {when(r.started_at)} · {state}'
            + (f" · expected canary share {r.expected_share:.1%}" if r.expected_share else "") + "</p>")


def render_rollout(rollout: Rollout, events: list[dict], dry_runs: dict[str, list[dict]] | None = None,
                   latest: dict | None = None) -> str:
    """The whole live page of ``rollout`` from its verdict events (and its dry-run policies'),
    with no backend: what ``GET /rollouts/{id}`` serves for that history."""
    return _rollout_page_html(build_series(rollout, events, dry_runs, latest))


def _rollout_page_html(s: Series) -> str:
    rollout = s.rollout
    head = f'<p><a href="/">all rollouts</a></p><h1>{esc(rollout.id)}</h1>{rollout_head(rollout)}'
    links = [("every chart's series", _api_path(rollout.id, "/series")), ("verdict history", _api_path(rollout.id, "/verdicts")),
             ("latest verdict", _api_path(rollout.id, "/verdict")), ("rollout", _api_path(rollout.id))]
    tail = (policy_section(rollout) + "<h2>JSON</h2><ul>"
            + "".join(f'<li><a href="{esc(u)}">{esc(label)}</a> <code>{esc(u)}</code></li>' for label, u in links)
            + "</ul>")
    return _page_html(f"rumgate: {rollout.id}", head, rollout_fragment(s), rollout_path(rollout.id) + "?fragment=1",
                      tail)


def _not_found(rid: str) -> web.Response:
    problem = name_problem(rid, MAX_ID)
    what = f"no rollout {rid!r}" if problem is None else f"no rollout: id: {problem}"
    return _html(f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>not found</title>'
                 f'<link rel="icon" href="data:,"></head><body><h1>404</h1><p>{esc(what)}</p>'
                 '<p><a href="/">all rollouts</a></p></body></html>', status=404)


def _etag(backend: Backend, r: Rollout) -> str:
    """What a rollout's fragment depends on: the rollout record and the latest verdict of
    each of its keys (their seqs and times; a history changes only with its latest)."""
    keys = [r.id, *(dry_run_key(r.id, p.name) for p in r.dry_run_policies)]
    latest = [backend.latest.get(k) or {} for k in keys]
    state = orjson.dumps([r.to_dict(), [[v.get("seq"), v.get("at"), v.get("emitted_at")] for v in latest]])
    return '"' + hashlib.sha256(state).hexdigest()[:32] + '"'


@auth.read
async def rollout_page(request: web.Request) -> web.Response:
    rid = request.match_info["id"]
    backend = backend_of(request)
    rollout = backend.rollouts.get(rid)
    if rollout is None:
        return _not_found(rid)
    if request.query.get("fragment") == "1":
        # Polled every few seconds: answered 304 (the browser keeps its copy) until a verdict
        # or the rollout changes, so an unchanged 2-hour rollout costs no rendering and no bytes.
        tag = _etag(backend, rollout)
        if tag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
        resp = _html(rollout_fragment(await load(backend, rollout)))
        resp.headers.update({"ETag": tag, "Cache-Control": "no-cache"})
        resp.enable_compression()
        return resp
    resp = _html(_rollout_page_html(await load(backend, rollout)))
    resp.enable_compression()
    return resp


ROUTES = [web.get("/", index), web.get("/rollouts/{id}", rollout_page)]
