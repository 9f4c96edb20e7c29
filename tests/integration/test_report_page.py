"""The backtest report (``rumgate backtest --report``) in real headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright), opened from ``file://`` with the network off.

Two reports, the same checks:

* ``test_report_of_a_file_backtest_offline``: two policies over simulated files of a canary
  whose LCP regresses, side by side;
* ``test_report_of_a_topic_replay_offline``: ``backtest --topic`` over the same kind of
  traffic in ``rum.beacons`` on the embedded broker.

The context is offline and every request that is not for the file itself is aborted and
recorded. Each checks that every chart is drawn (each polyline's SVG point list in the DOM
has as many points as the verdict events, from ``--output``, hold values of its series),
that the rollback marker sits at the deciding verdict's time, that no request was
attempted and that the browser logged no console message of warning or error, page error
or failed request; and that a chart's "JSON" link saves that chart's series with no request.
A screenshot of the report is written to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import orjson
from click.testing import CliRunner

from streams.cli import cli
from streams.offline.simulate import SCENARIOS, Regression, generate_beacons, write_ndjson
from tests.integration.test_rollout_page import CHROMIUM, CHROMIUM_ARGS, needs_chromium

SCENARIO = replace(SCENARIOS["stationary"], duration_s=420.0, canary_share=0.2,
                   regressions=(Regression("LCP", 1.25, start_s=60.0),))
ARGS = ["--app", SCENARIO.app, "--canary", SCENARIO.canary, "--baseline", SCENARIO.baseline]
POLICIES = {"two-metrics": "name: two-metrics\nmetrics:\n  - metric: LCP\n  - metric: errors\n"
                           "segments: [all, mobile]\nwarmup: 10s\nmin_duration: 2m\n",
            "strict": "name: strict\nalpha: 0.001\nmetrics:\n  - metric: LCP\nwarmup: 0s\n"}

# Everything the report draws, read from the DOM in one go.
DRAWN = """() => ({
  lines: [...document.querySelectorAll('svg.chart polyline.series')].map(p => ({
    section: p.closest('section.run').dataset.policy, chart: p.closest('svg').dataset.chart,
    series: p.dataset.series, declared: Number(p.dataset.points), drawn: p.points.numberOfItems,
    width: p.getBoundingClientRect().width})),
  charts: [...document.querySelectorAll('svg.chart')].map(s => ({
    section: s.closest('section.run').dataset.policy, chart: s.dataset.chart, height: s.getBoundingClientRect().height})),
  markers: [...document.querySelectorAll('svg.timeline[data-timeline="enforcing"] g.marker')].map(g => ({
    section: g.closest('section.run').dataset.policy, kind: g.dataset.kind, at: Number(g.dataset.at),
    width: g.getBoundingClientRect().width})),
  scripts: [...document.scripts].filter(s => s.type !== 'application/json').length,
})"""

_FIELD = {"effect": "ratio"}  # a series' name → its field in a verdict's metric, where they differ


def expected_points(events: list[dict]) -> dict[tuple[str, str, str], int]:
    """(policy, chart, series) → the number of the policy's verdicts that hold a value of it."""
    out: dict[tuple[str, str, str], int] = {}
    for e in events:
        policy = e["policy"]["name"]
        dq = e["data_quality"]
        for chart, name, value in (("canary_share", "canary_share", dq.get("canary_share")),
                                   ("canary_share", "expected_share", dq.get("expected_share")),
                                   ("page_views", "views_canary", dq["window_page_views"]["canary"]),
                                   ("page_views", "views_baseline", dq["window_page_views"]["baseline"]),
                                   ("page_views", "late_window", dq["late_beacons"])):
            key = (policy, f"quality/{chart}", name)
            out[key] = out.get(key, 0) + (value is not None)
        for m in e["metrics"]:
            for chart, names in (("evidence", ("e_rollback", "e_worse", "e_promote")), ("effect", ("effect",)),
                                 ("estimates", ("canary", "baseline", "window_canary", "window_baseline"))):
                for name in names:
                    key = (policy, f"{m['metric']}/{m['segment']}/{chart}", name)
                    out[key] = out.get(key, 0) + (m.get(_FIELD.get(name, name)) is not None)
    return out


async def _browse(report: Path, tmp: Path) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"problems": [], "attempted": [], "requests": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            context = await browser.new_context(viewport={"width": 1800, "height": 1000}, accept_downloads=True)
            await context.set_offline(True)

            async def only_the_file(route) -> None:
                if route.request.url.startswith("file://"):
                    await route.continue_()
                else:
                    out["attempted"].append(route.request.url)
                    await route.abort()

            await context.route("**/*", only_the_file)
            page = await context.new_page()
            page.on("console", lambda m: out["problems"].append(f"console.{m.type}: {m.text}")
                    if m.type in ("warning", "error") else None)
            page.on("pageerror", lambda e: out["problems"].append(f"page error: {e}"))
            page.on("requestfailed", lambda r: out["problems"].append(f"request failed: {r.url} {r.failure}"))
            page.on("request", lambda r: out["requests"].append(r.url))
            await page.goto(report.as_uri(), wait_until="load")
            out["drawn"] = await page.evaluate(DRAWN)
            await page.screenshot(path=str(tmp / "backtest-report.png"), full_page=True)
            link = page.locator("a.json[data-metric]").first
            out["link"] = {"metric": await link.get_attribute("data-metric"),
                           "segment": await link.get_attribute("data-segment")}
            async with page.expect_download() as waiting:
                await link.click()
            download = await waiting.value
            out["download"] = orjson.loads(Path(await download.path()).read_bytes())
            out["download_name"] = download.suggested_filename
            await page.wait_for_timeout(300)
        finally:
            await browser.close()
    return out


def check_report(out: dict, report: Path, events: list[dict], policies: list[str]) -> None:
    assert out["problems"] == [] and out["attempted"] == []
    assert set(out["requests"]) == {report.as_uri()}  # the file itself, nothing else
    drawn = out["drawn"]
    assert drawn["scripts"] == 1  # the JSON links' script; no live-update script
    want = expected_points(events)
    assert {(line["section"], line["chart"], line["series"]) for line in drawn["lines"]} == set(want)
    for line in drawn["lines"]:
        assert line["drawn"] == line["declared"] == want[(line["section"], line["chart"], line["series"])], line
        assert line["width"] > 0 or line["drawn"] <= 1, line  # drawn, not only in the markup
    assert all(c["height"] > 50 for c in drawn["charts"])
    assert [s for s in dict.fromkeys(c["section"] for c in drawn["charts"])] == policies
    for policy in policies:
        mine = [e for e in events if e["policy"]["name"] == policy]
        deciding = next((e for e in mine if e["verdict"] == "rollback"), None)
        rollbacks = [m for m in drawn["markers"] if m["section"] == policy and m["kind"] == "rollback"]
        assert [m["at"] for m in rollbacks] == ([] if deciding is None else [deciding["at"]]), policy
        assert all(m["width"] > 0 for m in rollbacks)
    # The JSON link saved its chart's series, as the live series endpoint would serve them.
    saved = out["download"]
    assert [(m["metric"], m["segment"]) for m in saved["metrics"]] == [(out["link"]["metric"], out["link"]["segment"])]
    first = [e for e in events if e["policy"]["name"] == policies[0]]
    assert saved["windows"] == len(first) and len(saved["metrics"][0]["at"]) == len(first)
    assert out["download_name"].endswith(".json")
    assert (report.parent / "backtest-report.png").stat().st_size > 10_000


@needs_chromium
def test_report_of_a_file_backtest_offline(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.ndjson.gz"
    write_ndjson(traffic, SCENARIO, seed=7)
    paths = []
    for name, text in POLICIES.items():
        paths += ["--policy", str(tmp_path / f"{name}.yaml")]
        (tmp_path / f"{name}.yaml").write_text(text)
    report, verdicts = tmp_path / "report.html", tmp_path / "verdicts.ndjson"
    result = CliRunner().invoke(cli, ["backtest", str(traffic), *ARGS, *paths, "-q", "-o", str(verdicts),
                                      "--report", str(report)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    events = [orjson.loads(line) for line in verdicts.read_bytes().splitlines()]
    out = asyncio.run(_browse(report, tmp_path))
    check_report(out, report, events, list(POLICIES))


@needs_chromium
def test_report_of_a_topic_replay_offline(pipeline, tmp_path: Path) -> None:
    pipeline.produce(generate_beacons(SCENARIO, seed=7), per_record=10)
    policy = tmp_path / "two-metrics.yaml"
    policy.write_text(POLICIES["two-metrics"])
    report, verdicts = tmp_path / "report.html", tmp_path / "verdicts.ndjson"
    result = CliRunner().invoke(cli, [
        "backtest", "--topic", pipeline.topics.beacons, "--broker", pipeline.broker.url,
        "--from", str(SCENARIO.start_ms), *ARGS, "--policy", str(policy), "-o", str(verdicts),
        "--report", str(report)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert f"report: {report}" in result.output
    events = [orjson.loads(line) for line in verdicts.read_bytes().splitlines()]
    assert "topic " + pipeline.topics.beacons in report.read_text()
    out = asyncio.run(_browse(report, tmp_path))
    check_report(out, report, events, ["two-metrics"])
