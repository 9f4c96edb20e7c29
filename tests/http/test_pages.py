"""The rollout pages (streams.http.pages) and their SVG (streams.http.charts), over verdict
events made by the decision core (tests/http/test_series.py's rollout).

What is drawn is read back from the HTML: every polyline has one point per verdict, the
timeline one marker at the rollback's time, thresholds sit where the log scale puts them,
and no text from a rollout, a policy or an event reaches the page unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from streams.http import pages
from streams.http.charts import Chart, Line, LogScale, Rule, render, timeline_svg
from streams.http.series import build_series
from tests.http.serve import AUTHZ, api
from tests.http.test_series import DRY, POLICY, ROLLOUT, dry_history, filled_backend, history


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def fragment(events=None, dry=None) -> Elements:
    events = history() if events is None else events
    return Elements(pages.rollout_fragment(build_series(ROLLOUT, events, {DRY.name: dry_history() if dry is None else dry})))


def _pairs(points: str) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in points.split()]


def test_every_chart_has_one_point_per_verdict():
    events = history()
    doc = fragment(events)
    charts = doc.all("svg", **{"class": "chart"})
    assert len(charts) == 3 * 4 + 2  # evidence, effect, estimates × (LCP, errors) × (all, mobile); share, page views
    for name in ("canary_share", "views_canary", "views_baseline", "late_window"):
        (line,) = doc.all("polyline", data_series=name)
        assert int(line["data-points"]) == len(events), name
    (expected,) = doc.all("polyline", data_series="expected_share")
    assert expected["data-points"] == "0"  # the rollout names no share: nothing is drawn, nothing invented
    for line in doc.all("polyline"):
        pts = _pairs(line["points"])
        assert int(line["data-points"]) == len(pts)
        if line["data-series"] in ("e_rollback", "e_worse", "e_promote"):
            assert len(pts) == len(events), line["data-series"]
    lcp = build_series(ROLLOUT, events).metric("LCP", "all")
    for name in ("canary", "window_canary", "window_baseline"):
        (first,) = [a for t, a in doc.tags if t == "polyline" and a["data-series"] == name][:1]
        assert int(first["data-points"]) == sum(v is not None for v in lcp[name]) > 20, name
    for band in doc.all("polygon", **{"class": "band"}):
        assert int(band["data-points"]) == len(events) and len(_pairs(band["points"])) == 2 * len(events)
    # x grows with time along every series
    for line in doc.all("polyline"):
        xs = [x for x, _ in _pairs(line["points"])]
        assert xs == sorted(xs)


def test_the_timeline_marks_the_rollback_at_its_time():
    events = history()
    doc = fragment(events)
    (strip,) = doc.all("svg", data_timeline="enforcing")
    assert int(strip["data-points"]) == len(events)
    rollbacks = doc.all("g", **{"class": "marker", "data-kind": "rollback"})
    assert [int(m["data-at"]) for m in rollbacks] == [events[-1]["at"]]
    assert [r["data-kind"] for r in doc.all("rect", **{"class": "run"})][:1] == ["warmup"]
    decisions = doc.all("line", **{"class": "decision"})
    assert {int(d["data-at"]) for d in decisions} == {events[-1]["at"]} and len(decisions) == 14  # every chart
    (dry_strip,) = doc.all("svg", data_timeline=f"dry-run:{DRY.name}")
    assert int(dry_strip["data-points"]) == len(dry_history())


def test_the_explanation_is_the_latest_verdicts_own_words():
    events = history()
    doc = fragment(events)
    (section,) = doc.all("section", **{"class": "verdict v-rollback"})
    assert section["data-seq"] == str(events[-1]["seq"])
    text = "".join(doc.text)
    for reason in events[-1]["reasons"]:
        assert reason in text
    views = events[-1]["data_quality"]["window_page_views"]
    assert f"window_page_views: canary {views['canary']} / baseline {views['baseline']}" in text
    assert doc.all("div", **{"class": "fragment"})[0]["data-live"] == "0"  # decided: the page stops polling


def test_a_running_rollout_keeps_the_page_live():
    doc = fragment(history()[:12])
    assert doc.all("div", **{"class": "fragment"})[0]["data-live"] == "1"
    assert doc.all("g", **{"class": "marker", "data-kind": "rollback"}) == []


def test_a_threshold_sits_where_the_log_scale_puts_it():
    scale = LogScale(1e-2, 1e4, a=150.0, b=10.0)
    assert scale(100.0) == pytest.approx(150 - 140 * 4 / 6)
    assert scale(1e-2) == 150.0 and scale(1e4) == 10.0 and scale(1e9) == 10.0 and scale(0.0) == 150.0
    # In a drawn chart: e-values from 0.05 to 300 and a threshold of 80 take the decades 1e-2..1e3.
    chart = Chart("e", [1000, 2000, 3000], 0, log=True, rules=[Rule("threshold_rollback", "t", 80.0, "red")],
                  lines=[Line("e_rollback", "e", [0.05, 3.0, 300.0], "red")])
    svg = Elements(render(chart))
    (rule,) = svg.all("line", data_rule="threshold_rollback")
    top, bottom = 10, 170 - 22
    want = bottom - (bottom - top) * (math.log10(80) + 2) / 5
    assert float(rule["y1"]) == pytest.approx(want, abs=0.06)
    (line,) = svg.all("polyline")
    ys = [y for _, y in _pairs(line["points"])]
    assert ys[1] == pytest.approx(bottom - (bottom - top) * (math.log10(3) + 2) / 5, abs=0.06)
    labels = [t for t in svg.text if t.startswith("1")]
    assert labels == ["1e-2", "1e-1", "1", "1e1", "1e2", "1e3"]


def test_overwhelming_evidence_is_drawn_at_the_top_not_off_the_chart():
    scale = LogScale.around([1.0, 1e300], [80.0], 150.0, 10.0)
    assert scale.hi <= 80.0 * 1e12 * 10 and scale(1e300) == 10.0
    with pytest.raises(ValueError, match="0 < lo < hi"):
        LogScale(0.0, 1.0, 0, 1)


HOSTILE = '</title><script>alert(1)</script><img src=x onerror=alert(2)>"\'&'


def test_hostile_text_in_events_is_escaped():
    events = history()[:6]
    last = dict(events[-1])
    last["reasons"] = [HOSTILE]
    last["reason_codes"] = [HOSTILE]
    last["overrides"] = [{"action": "hold", "actor": HOSTILE, "reason": HOSTILE, "at": 1, "active": True}]
    last["metrics"] = [dict(m, name=HOSTILE, segment=HOSTILE, statistic=HOSTILE) for m in last["metrics"]]
    last["policy"] = {"name": HOSTILE, "hash": HOSTILE, "dry_run": False}
    last["data_quality"] = {HOSTILE: HOSTILE, "window_page_views": {HOSTILE: HOSTILE}, "list": [HOSTILE]}
    html = pages.rollout_fragment(build_series(ROLLOUT, [*events[:-1], last]))
    assert "<script" not in html and "<img" not in html
    assert "&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    doc = Elements(html)
    assert HOSTILE in "".join(doc.text)  # shown, as text
    assert not [name for _, attrs in doc.tags for name in attrs if name.startswith("on") or name == "src"]
    assert {t for t, _ in doc.tags} <= {"div", "section", "h2", "h3", "small", "code", "ol", "li", "table", "tr", "th",
                                        "td", "svg", "title", "rect", "line", "text", "polyline", "polygon", "g",
                                        "path", "p", "span", "figure", "figcaption", "a", "circle"}


def test_an_id_of_every_allowed_character_is_linked_percent_encoded():
    """Ids and names cannot hold HTML's special characters (detectors.rollout refuses them), but
    ``/`` and ``+`` must be percent-encoded in links, and the links must reach the rollout."""
    rollout = replace(ROLLOUT, id="a+b/c@d:e_f.g-h")
    b, _ = filled_backend([dict(e, rollout=rollout.id) for e in history()], [], rollout)
    index, page, fragment_ = api(b).calls([(m, p, None, AUTHZ, None) for m, p in (
        ("GET", "/"), ("GET", "/rollouts/a%2Bb%2Fc@d:e_f.g-h"), ("GET", "/rollouts/a%2Bb%2Fc@d:e_f.g-h?fragment=1"))])
    assert index.status == page.status == fragment_.status == 200
    assert 'href="/rollouts/a%2Bb%2Fc@d:e_f.g-h"' in index.body
    assert 'data-src="/rollouts/a%2Bb%2Fc@d:e_f.g-h?fragment=1"' in page.body
    assert 'href="/v1/rollouts/a%2Bb%2Fc@d:e_f.g-h/series?metric=LCP&amp;segment=all"' in page.body


def test_unknown_rollouts_get_a_clear_html_404():
    b, _ = filled_backend()
    served = api(b)
    missing, bad = served.calls([("GET", "/rollouts/shop:nope", None, AUTHZ, None),
                                 ("GET", "/rollouts/%3Cscript%3E", None, AUTHZ, None)])
    assert missing.status == 404 and missing.content_type.startswith("text/html")
    assert "no rollout &#x27;shop:nope&#x27;" in missing.body
    assert bad.status == 404 and "<script" not in bad.body and "no rollout: id:" in bad.body


def test_the_page_allows_only_its_own_script_and_style():
    b, _ = filled_backend()
    reply = api(b).call("GET", f"/rollouts/{ROLLOUT.id}")
    assert reply.status == 200 and reply.content_type.startswith("text/html")
    csp = reply.headers["Content-Security-Policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", reply.body, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", reply.body, re.S)
    for text in (script, style):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_links_the_json_behind_each_chart_and_shows_the_policy():
    b, _ = filled_backend()
    reply = api(b).call("GET", f"/rollouts/{ROLLOUT.id}")
    doc = Elements(reply.body)
    hrefs = {a["href"] for a in doc.all("a")}
    base = "/v1/rollouts/shop-web:2026.11.23-canary"
    for metric in ("LCP", "errors"):
        for segment in ("all", "mobile"):
            assert f"{base}/series?metric={metric}&segment={segment}" in hrefs
    assert {f"{base}/series", f"{base}/verdicts", f"{base}/verdict", base} <= hrefs
    text = "".join(doc.text)
    assert POLICY.hash in text and "name: page-test" in text  # the resolved policy, as YAML
    (live,) = doc.all("div", id="live")
    assert live["data-src"] == f"/rollouts/{ROLLOUT.id}?fragment=1"


def test_the_fragment_is_the_live_part_alone():
    b, _ = filled_backend()
    reply = api(b).call("GET", f"/rollouts/{ROLLOUT.id}?fragment=1")
    assert reply.status == 200 and reply.body.startswith('<div class="fragment"')
    assert "<script" not in reply.body and "<html" not in reply.body


def test_the_list_links_every_rollout_with_its_latest_verdict():
    other = replace(ROLLOUT, id="shop:other", dry_run_policies=())
    b, _ = filled_backend()
    b.rollouts[other.id] = other
    reply = api(b).call("GET", "/")
    doc = Elements(reply.body)
    rows = {r["data-rollout"] for r in doc.all("tr") if r.get("data-rollout")}
    assert rows == {ROLLOUT.id, other.id}
    assert {"/rollouts/shop-web:2026.11.23-canary", "/rollouts/shop:other"} <= {a["href"] for a in doc.all("a")}
    text = "".join(doc.text)
    assert "rollback" in text and "no verdict yet" in text


def test_the_pages_follow_the_read_rules():
    b, _ = filled_backend()
    for path in ("/", f"/rollouts/{ROLLOUT.id}"):
        assert api(b).call("GET", path, headers={}).status == 401
        assert api(b, token="").call("GET", path, headers={}).status == 403
        assert api(b, read_open=True).call("GET", path, headers={}).status == 200


def test_the_timeline_marks_split_changes_and_incidents():
    from tests.http.test_series import _flagged

    events = _flagged(history(), incident={10, 11, 12, 13})
    rollout = ROLLOUT.with_share(0.25, events[5]["at"])
    doc = Elements(pages.rollout_fragment(build_series(rollout, events, {DRY.name: dry_history()})))
    got = [(int(g["data-at"]), g["data-kind"]) for g in doc.all("g", **{"class": "event"})]
    assert got == [(events[5]["at"], "split"), (events[10]["at"], "incident")]
    (enforcing,) = doc.all("svg", data_timeline="enforcing")
    text = "".join(doc.text)
    assert "split change: the canary's expected share is now 25.0%" in text
    assert "global incident: the baseline moved too, 4 windows in a row" in text


def test_a_timeline_with_an_override_marks_it():
    tl = {"seq": [1, 2, 3], "at": [5000, 10000, 15000], "verdict": ["continue", "hold", "hold"],
          "severity": ["none"] * 3, "code": ["collecting", "override_hold", "override_hold"],
          "override": [False, True, True]}
    doc = Elements(timeline_svg("t", "t", tl, 0, 15000))
    (marker,) = doc.all("g", **{"class": "marker"})
    assert marker["data-override"] == "true" and marker["data-at"] == "10000" and marker["data-kind"] == "hold"


def test_the_polled_fragment_is_not_sent_again_until_a_verdict_arrives():
    events = history()
    b, rec = filled_backend(events[:10], [])
    served = api(b)
    path = f"/rollouts/{ROLLOUT.id}?fragment=1"
    first = served.call("GET", path)
    tag = first.headers["Etag"]  # (the test client keeps the case it received)
    same = served.call("GET", path, headers={**AUTHZ, "If-None-Match": tag})
    assert first.status == 200 and same.status == 304 and same.headers["Etag"] == tag
    rec.history[ROLLOUT.id] = events[:11]
    b.latest[ROLLOUT.id] = events[10]
    changed = served.call("GET", path, headers={**AUTHZ, "If-None-Match": tag})
    assert changed.status == 200 and changed.headers["Etag"] != tag
    assert 'data-windows="11"' in changed.body
    assert served.call("GET", path, headers={"If-None-Match": tag}).status == 401  # the token is still needed


@pytest.mark.parametrize("path", [
    "/?fragment=2", "/?fragment=", "/rollouts/%00", "/rollouts/" + "a" * 300, "/rollouts/%E2%80%AE",
    f"/rollouts/{ROLLOUT.id}?fragment=1&fragment=2", f"/v1/rollouts/{ROLLOUT.id}/series?metric=%00",
    f"/v1/rollouts/{ROLLOUT.id}/series?metric=LCP&segment=", f"/v1/rollouts/{ROLLOUT.id}/series?metric=LCP&segment=%3Cx%3E",
    "/v1/rollouts/%3Cx%3E/series"], ids=repr)
def test_odd_requests_get_an_answer_that_says_why_never_a_500(path):
    b, _ = filled_backend()
    reply = api(b).call("GET", path)
    assert reply.status in (200, 400, 404), reply
    if reply.content_type.startswith("text/html"):  # a JSON refusal may quote what it refused (repr, cut)
        assert "<x>" not in reply.body and "\u202e" not in reply.body
