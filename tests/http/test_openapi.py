"""/v1/openapi.json: served open, and it describes every route the app serves and nothing else.

The check reads the app's router, so a new route without its description fails here.
"""

from __future__ import annotations

import re

import orjson

from streams.http import auth
from streams.http.openapi import OPENAPI
from streams.ingest.endpoint import IngestConfig, Ingestor, add_ingest_routes
from tests.http.serve import api, backend


def served_routes(app) -> dict[tuple[str, str], object]:
    """(path, method) → handler of every route (HEAD comes with each GET)."""
    return {(r.resource.canonical, r.method.lower()): r.handler for r in app.router.routes() if r.method != "HEAD"}


def documented(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec["paths"].items() for method in ops}


def test_the_description_is_served_open():
    for served in (api(backend()[0]), api(backend()[0], token="")):
        answer = served.call("GET", "/v1/openapi.json", headers={})
        assert answer.status == 200 and answer.content_type.startswith("application/json")
        assert answer.body == orjson.loads(orjson.dumps(OPENAPI))


def test_every_route_of_the_api_is_described():
    app = api(backend()[0]).app()
    routes = served_routes(app)
    assert len(routes) == 21, sorted(routes)
    assert set(routes) - documented(OPENAPI) == set(), "routes missing from the OpenAPI description"
    # With ingestion on the same app (as the worker serves it), the description is exactly the routes.
    add_ingest_routes(app, Ingestor(IngestConfig(), sink=None))
    assert documented(OPENAPI) == set(served_routes(app))


def test_the_description_says_which_routes_need_the_token():
    """An operation documented as open (``security: []``) is one the app serves without a token."""
    for (path, method), handler in served_routes(api(backend()[0]).app()).items():
        op = OPENAPI["paths"][path][method]
        guarded = auth.access(handler) is not None or path.startswith("/v1/flagger/")
        assert (op.get("security") != []) == guarded, (path, method)
        if guarded:
            assert {"401", "403"} <= set(op["responses"]), (path, method)
        params = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), (path, method)


def _strings(schema: dict, where: str):
    """Every string schema inside ``schema`` (properties and items), with its place."""
    if schema.get("type") == "string":
        yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _strings(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _strings(schema["items"], f"{where}[]")


def test_every_string_the_control_plane_takes_is_bounded():
    """A client generated from the description cannot send an unbounded or empty id, name or
    text: each has a maxLength, and each id or name its pattern. Arrays are capped too."""
    components = OPENAPI["components"]["schemas"]
    inputs = [(name, components[name]) for name in ("RolloutStart", "Override", "FlaggerWebhook")]
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            if path.startswith(("/v1/rollouts", "/v1/flagger")):
                inputs += [(f"{method} {path} ?{p['name']}", p["schema"]) for p in op.get("parameters", ())]
    # Not read by the API: Flagger's own fields, the path's rollout, a token compared and dropped.
    unread = {"Override.rollout", "FlaggerWebhook.name", "FlaggerWebhook.namespace", "FlaggerWebhook.phase",
              *(f"post /v1/flagger/{h} ?token" for h in ("confirm-promotion", "rollback", "rollout",
                                                  "confirm-traffic-increase"))}
    unbounded = [where for name, schema in inputs for where, s in _strings(schema, name)
                 if "maxLength" not in s and where not in unread]
    assert unbounded == []
    start = components["RolloutStart"]["properties"]
    for field in ("id", "app", "canary", "baseline"):
        assert start[field]["minLength"] == 1 and start[field]["pattern"].startswith("^[A-Za-z0-9]"), field
    assert start["dry_run_policies"]["maxItems"] == 8


def test_the_verdict_endpoint_documents_the_hold_kind_and_the_release_it_is_bound_to():
    """Issue 17's fields: ``hold`` (every kind, and null), ``image``/``release`` with the
    limit the handler applies, the 400 a bad one gets, and what a mismatch adds."""
    from detectors.verdict import HoldKind
    from streams.http.rollouts import MAX_IMAGE

    schema = OPENAPI["components"]["schemas"]["Verdict"]["properties"]
    assert schema["hold"]["enum"] == [*HoldKind, None]
    assert {"release", "judged"} <= set(schema)
    assert set(schema["release"]["properties"]) == {"image", "release", "tag", "canary", "match"}
    op = OPENAPI["paths"]["/v1/rollouts/{id}/verdict"]["get"]
    query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
    assert set(query) == {"image", "release"}
    assert all(p["schema"]["maxLength"] == MAX_IMAGE and not p["required"] for p in query.values())
    assert "400" in op["responses"]
    assert "release_mismatch" in OPENAPI["components"]["schemas"]["Verdict"]["properties"]["reason_codes"]["items"]["enum"]
