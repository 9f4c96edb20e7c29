"""``rumgate backtest --report``: one self-contained HTML file of the rollout page's views
(streams.offline.report), for a canary whose LCP regresses.

What is drawn is read back from the file and checked against the verdict events the same
run wrote with ``--output``: one chart of each kind per (metric, segment), each with one
point per verdict that holds its value, the rollback marker at the deciding verdict's time,
the final verdict's reasons word for word, the policy's name, hash and YAML, and nothing
that would need a server or the network. Two ``--policy`` give two sections on one axis.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from detectors.policy import parse_policy
from streams.cli import cli
from streams.offline.backtest import backtest_rollout
from streams.offline.report import PolicyRun, report_html
from streams.offline.simulate import SCENARIOS, Regression, write_ndjson
from tests.http.test_pages import Elements

SC = SCENARIOS["stationary"]
ARGS = ["--app", SC.app, "--canary", SC.canary, "--baseline", SC.baseline]
POLICY = "name: report-test\nmetrics:\n  - metric: LCP\n  - metric: errors\nsegments: [all, mobile]\nwarmup: 15s\n"
LENIENT = "name: lenient\nalpha: 0.001\nmetrics:\n  - metric: LCP\nwarmup: 0s\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """One backtest with --report and --output, and one with two policies."""
    tmp = tmp_path_factory.mktemp("report")
    traffic = tmp / "regressed.ndjson.gz"
    write_ndjson(traffic, replace(SC, duration_s=600.0, canary_share=0.2, regressions=(Regression("LCP", 1.25),)),
                 seed=5)
    (tmp / "policy.yaml").write_text(POLICY)
    (tmp / "lenient.yaml").write_text(LENIENT)
    runner = CliRunner()
    one = runner.invoke(cli, ["backtest", str(traffic), *ARGS, "--policy", str(tmp / "policy.yaml"),
                              "-o", str(tmp / "verdicts.ndjson"), "--report", str(tmp / "one.html")],
                        catch_exceptions=False)
    two = runner.invoke(cli, ["backtest", str(traffic), *ARGS, "--policy", str(tmp / "policy.yaml"),
                              "--policy", str(tmp / "lenient.yaml"), "-o", str(tmp / "both.ndjson"),
                              "--report", str(tmp / "two.html")], catch_exceptions=False)
    events = [orjson.loads(line) for line in (tmp / "verdicts.ndjson").read_bytes().splitlines()]
    both = [orjson.loads(line) for line in (tmp / "both.ndjson").read_bytes().splitlines()]
    return {"one": one, "two": two, "events": events, "both": both, "tmp": tmp,
            "html": (tmp / "one.html").read_text(), "html2": (tmp / "two.html").read_text()}


def test_the_backtest_rolls_back_and_writes_its_report(made):
    assert made["one"].exit_code == 1, made["one"].output
    assert made["events"][-1]["verdict"] == "rollback"
    assert f"report: {made['tmp'] / 'one.html'}" in made["one"].output
    assert "writing the report of 1 policy" in made["one"].stderr  # progress, on stderr


def test_the_report_is_self_contained(made):
    for text in (made["html"], made["html2"]):
        assert "http://" not in text and "https://" not in text
        doc = Elements(text)
        refs = [(t, k, v) for t, attrs in doc.tags for k, v in attrs.items() if k in ("src", "href", "action")]
        assert refs and all(v.startswith("#") or v == "data:," for _, _, v in refs), refs
        assert not re.search(r"(?<![-\w])src\s*=", text)  # no element loads anything
        assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", text)
        assert "url(" not in text and "@import" not in text
        # No live page left in it: no polling script, nothing to poll.
        assert 'id="live"' not in text and "fetch(" not in text and "?fragment=1" not in text
        (csp,) = [a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
        assert csp.startswith("default-src 'none'") and "unsafe-inline" not in csp and "connect-src" not in csp
        assert all(f.get("data-live") == "0" for f in doc.all("div", **{"class": "fragment"}))


def test_one_chart_per_metric_and_segment_with_a_point_per_verdict(made):
    events, doc = made["events"], Elements(made["html"])
    keys = list(dict.fromkeys((m["metric"], m["segment"]) for e in events for m in e["metrics"]))
    assert len(keys) == 4  # LCP, errors × all, mobile
    panels = doc.all("section", **{"class": "metric"})
    assert [p["data-metric"] for p in panels] == [f"{m}/{s}" for m, s in keys]
    charts = [a["data-chart"] for a in doc.all("svg", **{"class": "chart"})]
    assert charts == ["quality/canary_share", "quality/page_views"] + [f"{m}/{s}/{kind}" for m, s in keys
                                                 for kind in ("evidence", "effect", "estimates")]
    # Each polyline's points, against the values the verdicts hold (read in document order).
    want = []
    for metric, segment in keys:
        per = [next(m for m in e["metrics"] if (m["metric"], m["segment"]) == (metric, segment)) for e in events]
        present = {c: sum(m.get(c) is not None for m in per) for c in
                   ("e_rollback", "e_worse", "e_promote", "ratio", "window_canary", "window_baseline", "canary",
                    "baseline")}
        want += list(present.values())
    lines = doc.all("polyline", **{"class": "series"})
    quality = {"canary_share": lambda dq: dq.get("canary_share"), "expected_share": lambda dq: dq.get("expected_share"),
               "views_canary": lambda dq: dq["window_page_views"]["canary"],
               "views_baseline": lambda dq: dq["window_page_views"]["baseline"],
               "late_window": lambda dq: dq["late_beacons"]}
    shown = [(a["data-series"], int(a["data-points"])) for a in lines if a["data-series"] in quality]
    assert shown == [(name, sum(get(e["data_quality"]) is not None for e in events)) for name, get in quality.items()]
    drawn = [int(a["data-points"]) for a in lines if a["data-series"] not in quality]
    assert drawn == want
    assert all(len(a["points"].split()) == int(a["data-points"]) for a in lines)
    assert want[0] == len(events)  # an e-value in every verdict
    (strip,) = doc.all("svg", data_timeline="enforcing")
    assert int(strip["data-points"]) == len(events)


def test_the_rollback_marker_is_at_the_deciding_verdicts_time(made):
    events, doc = made["events"], Elements(made["html"])
    deciding = next(e for e in events if e["verdict"] == "rollback")
    markers = doc.all("g", **{"class": "marker", "data-kind": "rollback"})
    assert [int(m["data-at"]) for m in markers] == [deciding["at"]]
    lines = doc.all("line", **{"class": "decision"})
    assert {(d["data-kind"], int(d["data-at"])) for d in lines} == {("rollback", deciding["at"])}
    assert len(lines) == len(doc.all("svg", **{"class": "chart"}))  # on every chart


def test_the_explanation_is_the_final_verdicts_own_words(made):
    final = made["events"][-1]
    doc = Elements(made["html"])
    (section,) = doc.all("section", **{"class": f"verdict v-{final['verdict']}"})
    assert section["data-seq"] == str(final["seq"])
    block = made["html"].split('<ol class="reasons">', 1)[1].split("</ol>", 1)[0]
    items = re.findall(r"<li><code>(.*?)</code> (.*?)</li>", block)
    assert [(html_lib.unescape(c), html_lib.unescape(r)) for c, r in items] == list(
        zip(final["reason_codes"], final["reasons"]))


def test_the_policy_is_shown_by_name_hash_and_yaml(made):
    policy = parse_policy(POLICY)
    text = made["html"]
    assert policy.hash in text and f"policy {policy.name}" in text
    (pre,) = re.findall(r'<pre class="policy-yaml">(.*?)</pre>', text, re.S)
    shown = html_lib.unescape(pre)
    assert yaml.safe_load(shown) == orjson.loads(orjson.dumps(policy.to_dict()))


def test_the_series_behind_the_charts_are_in_the_file(made):
    events = made["events"]
    (data,) = re.findall(r'<script type="application/json" id="series-1" class="series">(.*?)</script>',
                         made["html"], re.S)
    series = orjson.loads(data)
    assert series["windows"] == len(events) and series["timeline"]["seq"] == [e["seq"] for e in events]
    assert [(m["metric"], m["segment"], len(m["at"])) for m in series["metrics"]] == [
        (k[0], k[1], len(events)) for k in dict.fromkeys((m["metric"], m["segment"]) for m in events[0]["metrics"])]
    links = Elements(made["html"]).all("a", **{"class": "json"})
    assert {(a.get("data-metric"), a.get("data-segment")) for a in links} == {
        (None, None), *((m["metric"], m["segment"]) for m in series["metrics"])}


def test_two_policies_give_two_sections_on_the_same_axes(made):
    assert made["two"].exit_code == 1  # the first policy's rollback decides
    assert "report-test: final verdict: ROLLBACK" in made["two"].output
    assert "lenient: final verdict:" in made["two"].output
    text = made["html2"]
    doc = Elements(text)
    sections = doc.all("section", **{"class": "run"})
    assert [s["data-policy"] for s in sections] == ["report-test", "lenient"]
    assert [r["data-policy"] for r in doc.all("tr") if r.get("data-policy")] == ["report-test", "lenient"]
    parts = text.split('<section class="run"')[1:]
    assert len(parts) == 2
    by_policy = {}
    for e in made["both"]:
        by_policy.setdefault(e["policy"]["name"], []).append(e)
    for part, name in zip(parts, ("report-test", "lenient")):
        sub = Elements(part)
        (strip,) = sub.all("svg", data_timeline="enforcing")
        assert int(strip["data-points"]) == len(by_policy[name])
        assert parse_policy(POLICY if name == "report-test" else LENIENT).hash in part
    # The same axes: LCP/all's charts have the same ticks in both sections (time and y).
    for chart in ("LCP/all/estimates", "LCP/all/effect", "LCP/all/evidence"):
        ticks = [re.search(rf'<svg class="chart" data-chart="{chart}".*?</svg>', p, re.S).group(0) for p in parts]
        labels = [re.findall(r"<text [^>]*>([^<]*)</text>", t) for t in ticks]
        assert labels[0] == labels[1], chart


def test_hostile_reasons_cannot_close_the_data_block_or_run_script():
    rollout = backtest_rollout("shop-web", "r2", "r1", parse_policy("name: quick\nmetrics:\n  - metric: LCP\n"))
    event = {"seq": 1, "at": 5000, "verdict": "continue", "reasons": ["</script><script>alert(1)</script><!--"],
             "reason_codes": ["x"], "metrics": [], "policy": {"name": "quick", "dry_run": False}}
    text = report_html([PolicyRun(rollout, [event])], source="files a")
    assert text.count("<script") == 2  # the data block and the JSON links' script, nothing else
    assert "alert(1)" in text and "<script>alert" not in text


def test_a_report_needs_a_run():
    with pytest.raises(ValueError, match="at least one"):
        report_html([], source="nothing")


def test_help_documents_report_and_repeated_policies():
    out = CliRunner().invoke(cli, ["backtest", "--help"]).output
    assert "--report" in out and "self-contained" in out and "--policy" in out and "again" in out


def test_report_path_that_cannot_be_written_is_a_clear_error(made, tmp_path: Path):
    traffic = made["tmp"] / "regressed.ndjson.gz"
    result = CliRunner().invoke(cli, ["backtest", str(traffic), *ARGS, "-q", "--report",
                                      str(tmp_path / "missing" / "r.html")])
    assert result.exit_code != 0 and "cannot write the report" in result.output
