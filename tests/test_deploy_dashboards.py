"""deploy/grafana and deploy/prometheus: the dashboard and the alerting rules parse, and every
PromQL expression in them names only series a worker exposes, with labels those series carry.

The series come from a real :class:`streams.http.metrics.Metrics` registry (the one a worker
serves at ``/metrics``): its ``collect()`` sample names, with the suffixes prometheus-client
adds (``_total``, ``_bucket``, ``_sum``, ``_count``, ``_created``). Expressions are read by a
small PromQL tokenizer (:func:`read_promql`) that knows selectors, matchers, ``by``/
``without``/``on``/``ignoring`` lists and which selectors an aggregation covers; where
``promql-parser`` is installed, a test also parses every expression with it and checks the
tokenizer read the same selectors and matchers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from detectors.verdict import VERDICTS
from streams.http.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "rumgate-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "rumgate-alerts.yaml"
README = ROOT / "deploy" / "README.md"

JOB = "rumgate"  # the scrape job every alert selects (deploy/README.md, "Dashboards and alerts")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
PROMETHEUS_SERIES = {"up": set()}  # written by Prometheus itself for each target
# Label values a worker can write: runtime.Stage2.publish labels verdicts with the verdict kind
# and str(dry_run).lower().
CLOSED_VALUES = {"verdict": {str(v) for v in VERDICTS}, "dry_run": {"true", "false"}}
# What Grafana puts in place of its range variables before the query reaches Prometheus.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
VARIABLE_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEVERITIES = {"critical", "warning", "info"}

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
                "quantile", "count_values"}
FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent",
             "absent_over_time", "vector", "scalar", "clamp_min", "clamp_max", "max_over_time",
             "min_over_time", "avg_over_time", "last_over_time", "changes", "resets", "time", "timestamp"}
RANGE_FUNCTIONS = {"rate", "irate", "increase"}  # meaningful on counters only
KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<range>\[[0-9smhdwy:]+\])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>])
""", re.VERBOSE)


# -- what a worker exposes -------------------------------------------------------------------

def exposed_series() -> tuple[dict[str, set[str]], set[str], dict[str, str]]:
    """``(series name → label names, counter-like series, series name → family name)`` of a
    worker's registry, built as the worker builds it. A labelled metric exposes no sample
    until it has a child, so each gets one first (its label names from the collector)."""
    metrics = Metrics()
    metrics.watch_ingest({})  # as the worker and `rumgate ingest` do
    metrics.watch_readiness(list)
    for collector in vars(metrics).values():
        names = getattr(collector, "_labelnames", ())
        if names:
            collector.labels(*["x"] * len(names))
    labels: dict[str, set[str]] = {}
    counter_like: set[str] = set()
    family_of: dict[str, str] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            family_of[sample.name] = family.name
            if family.type in ("counter", "histogram") and not sample.name.endswith("_created"):
                counter_like.add(sample.name)
    return labels, counter_like, family_of


SERIES, COUNTER_LIKE, FAMILY_OF = exposed_series()


# -- reading PromQL --------------------------------------------------------------------------

@dataclass
class Selector:
    metric: str
    at: int  # token index
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # (label, op, value)
    ranged: bool = False  # followed by [range]
    inside: str | None = None  # the function it is the direct argument of


@dataclass
class Grouping:
    kind: str  # by, without, on, ignoring
    labels: list[str]
    span: tuple[int, int]  # token indices the list applies to


@dataclass
class PromQL:
    selectors: list[Selector]
    groupings: list[Grouping]
    calls: list[tuple[str, tuple[int, int]]]  # (function, span of its arguments)


def tokenize(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def _closing(tokens: list[tuple[str, str]], i: int, expr: str) -> int:
    """Index of the ``)`` or ``}`` matching the bracket at ``i``."""
    pairs = {"(": ")", "{": "}"}
    opening = tokens[i][1]
    assert opening in pairs, f"expected ( or {{ at token {i} of {expr!r}"
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == opening:
            depth += 1
        elif tokens[j][1] == pairs[opening]:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {opening} in {expr!r}")


def _labels(tokens: list[tuple[str, str]], i: int, expr: str) -> tuple[list[str], int]:
    """The label list ``( a, b )`` starting at ``i``, and the index after it."""
    end = _closing(tokens, i, expr)
    inner = [t for t in tokens[i + 1:end] if t[1] != ","]
    assert all(kind == "ident" for kind, _ in inner), f"not a label list in {expr!r}"
    return [text for _, text in inner], end + 1


def read_promql(expr: str) -> PromQL:
    """The selectors, label lists and function calls of one PromQL expression.

    >>> q = read_promql('sum by (verdict) (rate(rumgate_verdicts_total{dry_run="false"}[5m]))')
    >>> [(s.metric, s.matchers, s.ranged, s.inside) for s in q.selectors]
    [('rumgate_verdicts_total', [('dry_run', '=', 'false')], True, 'rate')]
    >>> [(g.kind, g.labels) for g in q.groupings]
    [('by', ['verdict'])]
    """
    tokens = tokenize(expr)
    selectors, groupings, calls = [], [], []
    postfix: dict[int, int] = {}  # a "by" after its aggregation's argument → the index after its list
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "op" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if kind != "ident":
            i += 1
            continue
        if text in AGGREGATIONS:
            j, labels, modifier = i + 1, None, None
            if nxt in ("by", "without"):
                modifier = nxt
                labels, j = _labels(tokens, i + 2, expr)
            assert tokens[j][1] == "(", f"{text} without its argument in {expr!r}"
            end = _closing(tokens, j, expr)
            if modifier is None and end + 1 < len(tokens) and tokens[end + 1][1] in ("by", "without"):
                modifier = tokens[end + 1][1]
                labels, postfix[end + 1] = _labels(tokens, end + 2, expr)
            if modifier:
                groupings.append(Grouping(modifier, labels, (j, end)))
            calls.append((text, (j, end)))
            i = j
        elif text in FUNCTIONS:
            assert nxt == "(", f"{text} is not called in {expr!r}"
            calls.append((text, (i + 1, _closing(tokens, i + 1, expr))))
            i += 1
        elif text in ("on", "ignoring"):
            labels, i = _labels(tokens, i + 1, expr)
            groupings.append(Grouping(text, labels, (0, len(tokens) - 1)))
        elif text in ("group_left", "group_right") and nxt == "(":
            labels, i = _labels(tokens, i + 1, expr)  # labels copied from the "one" side
            groupings.append(Grouping(text, labels, (0, len(tokens) - 1)))
        elif text in ("by", "without") and i in postfix:
            i = postfix[i]
        elif text in ("by", "without"):
            raise ValueError(f"{text} outside an aggregation in {expr!r}")
        elif text in KEYWORDS:
            i += 1
        else:
            s = Selector(text, i)
            j = i + 1
            if nxt == "{":
                end = _closing(tokens, j, expr)
                parts = tokens[j + 1:end]
                while parts:
                    (lk, label), (_, op), (vk, value), *parts = parts
                    assert lk == "ident" and op in ("=", "!=", "=~", "!~") and vk == "string", \
                        f"a bad matcher in {expr!r}"
                    s.matchers.append((label, op, value[1:-1]))
                    if parts:
                        assert parts.pop(0)[1] == ",", f"matchers not separated by commas in {expr!r}"
                j = end + 1
            s.ranged = j < len(tokens) and tokens[j][0] == "range"
            if i >= 2 and tokens[i - 1][1] == "(" and tokens[i - 2][0] == "ident":
                s.inside = tokens[i - 2][1]
            selectors.append(s)
            i = j
    return PromQL(selectors, groupings, calls)


def problems_of(expr: str, where: str) -> list[str]:
    """What is wrong with ``expr`` against the series a worker exposes."""
    q = read_promql(expr)
    known = {**SERIES, **PROMETHEUS_SERIES}
    out = []
    if not q.selectors:
        out.append(f"{where}: selects no series: {expr}")
    for s in q.selectors:
        if s.metric not in known:
            out.append(f"{where}: {s.metric} is not a series a worker exposes")
            continue
        have = known[s.metric] | TARGET_LABELS
        for label, op, value in s.matchers:
            if label not in have:
                out.append(f"{where}: {s.metric} has no label {label!r}")
            elif op == "=" and label in CLOSED_VALUES and value not in CLOSED_VALUES[label]:
                out.append(f"{where}: {label}={value!r} is never written (only {sorted(CLOSED_VALUES[label])})")
        if s.metric in COUNTER_LIKE and not (s.ranged and s.inside in RANGE_FUNCTIONS):
            out.append(f"{where}: {s.metric} is a counter: read it through rate() or increase()")
        if s.inside in RANGE_FUNCTIONS and s.metric not in COUNTER_LIKE:
            out.append(f"{where}: {s.inside}() of {s.metric}, which is not a counter")
    for g in q.groupings:
        for s in (s for s in q.selectors if g.span[0] <= s.at <= g.span[1] and s.metric in known):
            missing = set(g.labels) - known[s.metric] - TARGET_LABELS
            if missing:
                out.append(f"{where}: {g.kind} ({', '.join(g.labels)}) over {s.metric}, which has no {sorted(missing)}")
    for name, span in q.calls:
        if name != "histogram_quantile":
            continue
        inner = [s for s in q.selectors if span[0] <= s.at <= span[1]]
        if not inner or not all(s.metric.endswith("_bucket") for s in inner):
            out.append(f"{where}: histogram_quantile over something else than _bucket series")
        if not any(g.kind == "by" and "le" in g.labels and span[0] <= g.span[0] <= span[1] for g in q.groupings):
            out.append(f"{where}: histogram_quantile needs its buckets summed by (le)")
    return out


def grafana_expr(expr: str) -> str:
    for variable, value in GRAFANA_RANGES.items():
        expr = expr.replace(variable, value)
    return expr


# -- the files -------------------------------------------------------------------------------

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out += all_panels(p.get("panels", []))  # a collapsed row holds its panels
    return out


def data_panels() -> list[dict]:
    return [p for p in all_panels(dashboard()["panels"]) if p["type"] != "row"]


def variables() -> dict[str, dict]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(f"panel {p['id']} ({p['title']}) {t['refId']}", grafana_expr(t["expr"]))
            for p in data_panels() for t in p["targets"]]


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def alerts() -> list[dict]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def alert_exprs() -> list[tuple[str, str]]:
    return [(f"alert {r['alert']}", r["expr"]) for r in alerts()]


def variable_query(v: dict) -> str:
    q = v["query"]
    return q["query"] if isinstance(q, dict) else q


# -- the reader itself -----------------------------------------------------------------------

@pytest.mark.parametrize("expr, problem", [
    ("rate(rumgate_beacon_total[5m])", "rumgate_beacon_total is not a series"),  # a typo
    ("rumgate_beacons_total", "is a counter"),  # a raw counter
    ("rate(rumgate_consumer_lag[5m])", "not a counter"),  # rate of a gauge
    ('rumgate_consumer_lag{partiton="0"}', "has no label 'partiton'"),
    ("sum by (reason) (rate(rumgate_records_total[5m]))", "has no ['reason']"),
    ("sum(rate(rumgate_records_total[5m])) by (reason)", "has no ['reason']"),  # the postfix form
    ('sum(rate(rumgate_verdicts_total{verdict="rolback"}[5m]))', "verdict='rolback' is never written"),
    ("histogram_quantile(0.99, sum(rate(rumgate_window_close_to_verdict_seconds_bucket[5m])))", "by (le)"),
    ("histogram_quantile(0.99, sum by (le) (rate(rumgate_window_close_to_verdict_seconds_sum[5m])))", "_bucket"),
], ids=["typo", "raw-counter", "rate-of-gauge", "label-typo", "by-missing-label", "by-postfix",
        "label-value", "quantile-without-le", "quantile-not-bucket"])
def test_the_reader_finds_what_is_wrong(expr, problem):
    found = problems_of(expr, "t")
    assert any(problem in p for p in found), found


def test_the_reader_accepts_what_is_right():
    assert problems_of('sum by (job, verdict, dry_run) (increase(rumgate_verdicts_total{job="rumgate", '
                       'instance=~".+", verdict="rollback"}[1h])) / on (job) group_left '
                       'sum by (job) (rate(rumgate_beacons_total[5m])) > 0 and absent(up{job="rumgate"} == 1)',
                       "t") == []


@pytest.mark.parametrize("expr", ["sum(rate(x[5m])", "rate(x[$__rate_interval])", "x{job=}", "{job=\"a\"}",
                                  "sum by job (x)"])
def test_the_reader_refuses_what_it_cannot_read(expr):
    with pytest.raises((ValueError, AssertionError)):
        read_promql(expr)


# -- the dashboard ---------------------------------------------------------------------------

def test_dashboard_parses_as_a_current_grafana_dashboard():
    d = dashboard()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 39  # Grafana 11 and later
    assert d["uid"] and d["title"] and d["panels"]
    assert d.get("id") is None, "an exported id would clash with the importing Grafana's own"


def test_dashboard_has_a_prometheus_datasource_variable_and_job_and_instance():
    v = variables()
    assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert v[name]["type"] == "query" and v[name]["datasource"] == VARIABLE_DATASOURCE
    assert "$job" in variable_query(v["instance"]), "instances are those of the selected jobs"


def test_dashboard_variable_queries_name_exposed_series_and_labels():
    for name in ("job", "instance"):
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable_query(variables()[name]))
        assert m, f"variable {name}: not a label_values() query"
        selector, label = m.groups()
        assert problems_of(f"sum by ({label}) (rate({selector}[5m]))", f"variable {name}") == []


def test_panel_ids_are_unique():
    ids = [p["id"] for p in all_panels(dashboard()["panels"])]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_panels_fit_the_grid_without_overlapping():
    cells: dict[tuple[int, int], int] = {}
    for p in all_panels(dashboard()["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, f"panel {p['id']} leaves the 24 columns"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {p['id']} overlap"
                cells[(x, y)] = p["id"]


def test_every_panel_and_target_uses_the_datasource_variable():
    for p in data_panels():
        assert p["datasource"] == VARIABLE_DATASOURCE, f"panel {p['id']}"
        assert p["targets"], f"panel {p['id']} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"panel {p['id']}: refIds {refs}"
        for t in p["targets"]:
            assert t["datasource"] == VARIABLE_DATASOURCE, f"panel {p['id']} target {t['refId']}"


def test_every_dashboard_expression_uses_only_exposed_series_and_labels():
    found = [problem for where, expr in dashboard_exprs() for problem in problems_of(expr, where)]
    assert not found, "\n".join(found)


def test_every_dashboard_selector_follows_the_job_and_instance_variables():
    for where, expr in dashboard_exprs():
        for s in read_promql(expr).selectors:
            assert ("job", "=~", "$job") in s.matchers and ("instance", "=~", "$instance") in s.matchers, \
                f"{where}: {s.metric} ignores the $job / $instance variables"


def test_the_dashboard_shows_every_metric_a_worker_exposes():
    shown = {FAMILY_OF[s.metric] for _, expr in dashboard_exprs()
             for s in read_promql(expr).selectors if s.metric in FAMILY_OF}
    missing = set(FAMILY_OF.values()) - shown
    assert not missing, f"no panel of deploy/grafana/rumgate-dashboard.json shows {sorted(missing)}"


# -- the alerting rules ----------------------------------------------------------------------

def test_rules_parse_as_prometheus_rule_groups():
    groups = rule_groups()
    names = [g["name"] for g in groups]
    assert groups and len(names) == len(set(names))
    for g in groups:
        assert g["rules"], f"group {g['name']} is empty"
        assert set(g) <= {"name", "interval", "rules", "limit"}, f"group {g['name']}: {set(g)}"
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert all(re.fullmatch(r"Rumgate[A-Z][A-Za-z0-9]+", n) for n in names), names


def test_every_alert_has_for_severity_summary_and_description():
    for r in alerts():
        assert set(r) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, r["alert"]
        assert isinstance(r["expr"], str) and r["expr"].strip(), r["alert"]
        assert re.fullmatch(r"[1-9]\d*[smhdwy]", str(r.get("for", ""))), f"{r['alert']}: for {r.get('for')!r}"
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r["annotations"]["summary"].strip() and r["annotations"]["description"].strip(), r["alert"]


def test_every_alert_expression_uses_only_exposed_series_and_labels():
    found = [problem for where, expr in alert_exprs() for problem in problems_of(expr, where)]
    assert not found, "\n".join(found)


def test_every_alert_selects_the_rumgate_job():
    for where, expr in alert_exprs():
        for s in read_promql(expr).selectors:
            assert ("job", "=", JOB) in s.matchers, f"{where}: {s.metric} without job=\"{JOB}\""


def test_alert_templates_use_only_labels_the_alert_keeps():
    """``{{ $labels.x }}`` renders empty when the expression's result has no label x."""
    for r in alerts():
        q = read_promql(r["expr"])
        kept = set.union(*({*SERIES.get(s.metric, set()), *TARGET_LABELS} for s in q.selectors))
        for g in q.groupings:
            if g.kind == "by":
                kept &= set(g.labels)
        used = {m for text in r["annotations"].values() for m in re.findall(r"\$labels\.(\w+)", text)}
        assert used <= kept, f"{r['alert']}: {sorted(used - kept)} are not labels of its result"


# -- what the annotations and descriptions tell a person to check ----------------------------

def setting_names() -> set[str]:
    from streams.live.settings import Settings

    return {"RUMGATE_" + f.name.upper() for f in dataclasses.fields(Settings) if f.name != "topics"}


def http_paths() -> set[str]:
    from aiohttp import web

    from streams.http.api import ROUTES
    from streams.ingest.endpoint import add_ingest_routes

    async def handle(request):  # never called
        return None

    app = web.Application()
    add_ingest_routes(app, SimpleNamespace(handle=handle))
    return {r.path for r in ROUTES} | {r.resource.canonical for r in app.router.routes()}


def operator_texts() -> list[tuple[str, str]]:
    return ([(f"alert {r['alert']}", r["annotations"]["description"] + " " + r["annotations"]["summary"])
             for r in alerts()]
            + [(f"panel {p['id']}", p.get("description", "")) for p in data_panels()])


def test_every_setting_command_and_path_named_exists():
    from streams.cli import cli

    settings, paths = setting_names(), http_paths()
    for where, text in operator_texts():
        for name in re.findall(r"\bRUMGATE_[A-Z0-9_]+", text):
            assert name in settings, f"{where}: {name} is not a setting"
        for path in re.findall(r"(?<![\w.])(/(?:readyz|healthz|metrics|v1/[\w{}/.-]*[\w}]))", text):
            assert path in paths, f"{where}: {path} is not a route"
        for command in re.findall(r"`rumgate ([a-z-]+)(?: ([a-z-]+))?", text):
            top = cli.get_command(None, command[0])
            assert top is not None, f"{where}: rumgate {command[0]} is not a command"
            if command[1] and hasattr(top, "commands"):
                assert command[1] in top.commands, f"{where}: rumgate {' '.join(command)} is not a command"


def test_every_alert_tells_what_to_check():
    for r in alerts():
        text = r["annotations"]["description"]
        assert re.search(r"/readyz|/healthz|/v1/|`rumgate [a-z]|RUMGATE_[A-Z]", text), \
            f"{r['alert']}: name an endpoint, a rumgate command or a setting to check"


def test_readme_explains_every_alert():
    text = README.read_text(encoding="utf-8")
    assert "## Dashboards and alerts" in text
    missing = [r["alert"] for r in alerts() if r["alert"] not in text]
    assert not missing, f"deploy/README.md does not explain {missing}"


# -- an actual PromQL parser (promql-parser, a dev dependency) ----------------------------------

def test_every_expression_parses_as_promql_and_reads_as_the_tokenizer_reads_it():
    import promql_parser
    exprs = dashboard_exprs() + alert_exprs() + [
        (f"variable {n}", f"count({m.group(1)})") for n in ("job", "instance")
        if (m := re.fullmatch(r"label_values\((.+),\s*\w+\)", variable_query(variables()[n])))]
    for where, expr in exprs:
        try:
            ast = promql_parser.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}: {expr}")
        parsed = []

        def visit(node, parsed=parsed):
            if isinstance(node, promql_parser.VectorSelector):
                parsed.append((node.name, sorted((m.name, m.value) for m in node.matchers.matchers)))

        promql_parser.walk(ast, visit)
        read = [(s.metric, sorted((label, value) for label, _, value in s.matchers))
                for s in read_promql(expr).selectors]
        assert sorted(parsed) == sorted(read), where
