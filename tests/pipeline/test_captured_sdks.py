"""The real SDKs' recorded page loads (``tests/sdks/captures``) through stage 1: one page view each.

The browser tests (``tests/sdks``) show the same end to end; these run in a second, without a
browser, on the very requests the SDKs sent, and pin what stage 1 counts of them: each
request's beacons as the endpoint converts them, one record per request, the requests of the
page while it was open a tenth of a second apart and those sent on hide a minute later
(windows apart), then :class:`~detectors.pipeline.aggregate.PartitionAggregator` as the
worker runs it. A second test shows that web-vitals' two ways of sending (a request per
metric, or one batch on hide) give the same window counts for the same pages.
"""

from __future__ import annotations

import random

import orjson
import pytest

from detectors.pipeline.aggregate import PartitionAggregator
from detectors.windows import WindowSummary
from streams.ingest.formats import Context, convert_items, parse_body
from tests.ingest.formats import captures
from tests.sdks.sdks import SDKS

T0 = 1_763_856_000_000
HIDE_MS = 60_000  # when the page is hidden: the closing requests land windows later


def stage1(records: list[bytes]) -> list[WindowSummary]:
    agg = PartitionAggregator(0)
    step, last = agg.process(list(enumerate(records))), agg.flush()
    return step.closed + last.closed


def totals(summaries: list[WindowSummary]) -> dict:
    out = {"page_views": sum(s.page_views for s in summaries), "error_views": sum(s.error_views for s in summaries)}
    for s in summaries:
        for m, sketch in s.sketches.items():
            if sketch.count:
                out[m] = out.get(m, 0) + sketch.count
                out[f"{m} max"] = max(out.get(f"{m} max", 0.0), sketch.quantile(1.0))
    return out


def captured_records(config: str) -> list[bytes]:
    records, opened, closing = [], 0, 0
    for request in captures.requests(config):
        if request["phase"] == "closing":
            at, closing = T0 + HIDE_MS + 100 * closing, closing + 1
        else:
            at, opened = T0 + 100 * opened, opened + 1
        ctx = captures.context(request)
        conversion = convert_items(captures.items(request), Context(received_at=at, app=ctx.app, release=ctx.release))
        assert conversion.rejects == [], conversion.rejects
        if conversion.beacons:
            records.append(orjson.dumps(conversion.beacons))
    return records


#: What stage 1 cannot count right yet, per capture (as in tests/sdks/test_sdks.py's GAPS).
GAPS = {
    "boomerang": "CLS 0: c.cls restarts at every beacon and the banner's shift is on the error beacon",
}


def _params():
    for sdk in SDKS:
        marks = [pytest.mark.xfail(strict=True, reason=GAPS[sdk.name])] if sdk.name in GAPS else []
        yield pytest.param(sdk, marks=marks, id=sdk.name)


@pytest.mark.parametrize("sdk", list(_params()))
def test_a_captured_page_load_is_one_page_view_with_its_metrics_and_error(sdk):
    got = totals(stage1(captured_records(sdk.name)))
    wanted = {"LCP", "FCP", "TTFB", "CLS"} | ({"INP"} if sdk.inp else set())
    assert got["page_views"] == 1
    assert got["error_views"] == (1 if sdk.errors else 0)
    assert {m: got.get(m) for m in wanted} == {m: 1 for m in wanted}  # each metric once
    assert got["CLS max"] > 0.05  # the banner shifts the page by about 0.09


def _page(rng: random.Random, n: int) -> list[dict]:
    """One page's web-vitals Metric objects, as ``onTTFB(...)`` and the others report them."""
    values = {"TTFB": rng.uniform(20, 900), "FCP": rng.uniform(300, 3000), "LCP": rng.uniform(500, 6000),
              "INP": rng.uniform(16, 600), "CLS": rng.choice([0.0, rng.uniform(0, 0.4)])}
    return [{"name": name, "value": value, "id": f"v6-{n}-{i}", "navigationType": "navigate"}
            for i, (name, value) in enumerate(values.items())]


def _convert(body: list | dict, at: int) -> list[dict]:
    items = parse_body(orjson.dumps(body), "text/plain;charset=UTF-8")
    conversion = convert_items(items, Context(received_at=at, app="shop-web", release="r2", device="desktop"))
    assert conversion.rejects == []
    return conversion.beacons


def test_web_vitals_one_request_per_metric_counts_as_the_batch_on_hide():
    rng = random.Random(7)
    each, batched = [], []
    for n in range(400):
        start = T0 + 700 * n
        metrics = _page(rng, n)
        hide = start + rng.randint(2_000, 300_000)
        # the README's sendToAnalytics: TTFB, FCP and LCP as the page loads, INP and CLS on hide
        for metric, at in zip(metrics, (start + 50, start + 300, start + 1500, hide, hide)):
            each.append((at, _convert(metric, at)))
        batched.append((hide, _convert(metrics, hide)))  # one JSON array of the queue, on hide
    records = lambda sends: [orjson.dumps(b) for _, b in sorted(sends, key=lambda s: s[0])]  # noqa: E731
    per_metric, batch = stage1(records(each)), stage1(records(batched))
    assert totals(per_metric) == totals(batch)
    assert totals(batch)["page_views"] == 400
    for m in ("LCP", "INP", "CLS", "FCP", "TTFB"):  # the same values, bucket for bucket
        assert merged(per_metric, m) == merged(batch, m), m
        assert sum(s.over_good[m] for s in per_metric) == sum(s.over_good[m] for s in batch)


def merged(summaries: list[WindowSummary], metric: str):
    out = summaries[0].sketches[metric].copy()
    for s in summaries[1:]:
        out.merge(s.sketches[metric])
    return out
