"""The OpenAPI 3.1 description of :mod:`streams.http.api`, served at ``/v1/openapi.json``.

Its schemas say what the API accepts, built from the same constants as the checks
(:mod:`detectors.rollout`'s id and name patterns, the dry-run cap, the policy size), so a
client generated from it, or a fuzzer, sends what rumgate takes; what a schema cannot say
(a policy's YAML, an override that has expired) is a 400 that says why.
"""

from __future__ import annotations

from aiohttp import web

from detectors.policy import MAX_POLICY_CHARS
from detectors.rollout import ID_PATTERN, MAX_DRY_RUN_POLICIES, MAX_ID, MAX_NAME, NAME_PATTERN
from detectors.verdict import ReasonCode
from streams.http.replies import json
from streams.http.rollouts import MAX_IMAGE

__all__ = ["OPENAPI", "ROUTES"]

_ERROR = {"description": "Refused; `error` says why",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AUTH = {"401": {**_ERROR, "description": "No token"}, "403": {**_ERROR, "description": "Wrong token, or none configured"}}
_TS_MAX = 9_999_999_999_999  # epoch ms, as the API checks
#: A rollout id, and an app, release or policy name (detectors.rollout).
_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": ID_PATTERN}
_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN}
_POLICY_TEXT = {"type": "string", "maxLength": MAX_POLICY_CHARS, "description": "policy YAML (plain values, no tags)"}
_EPOCH_MS = {"type": "integer", "minimum": 1, "maximum": _TS_MAX}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S"}  # not blank
_ID = [{"name": "id", "in": "path", "required": True, "schema": _ID_SCHEMA,
        "description": "Rollout id, e.g. shop-web:2026.11.23-abc (percent-encode / and +)"}]
_JSON = lambda ref, desc: {"description": desc, "content": {"application/json": {"schema": {"$ref": ref}}}}  # noqa: E731

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "rumgate", "version": "1",
             "description": "Release verdicts from real users' web vitals: rollouts, verdicts, overrides, "
                            "and the Argo Rollouts / Flagger contracts."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Verdict": {
                "type": "object", "required": ["rollout", "seq", "verdict", "reasons"],
                "properties": {
                    "rollout": {"type": "string"}, "seq": {"type": "integer"},
                    "verdict": {"enum": ["continue", "promote", "hold", "rollback"]},
                    "hold": {"enum": ["final", "transient", None],
                             "description": "a hold's kind, null for any other verdict. final: waiting cannot "
                                            "change it, a person must decide (the deadline, a person's hold, a "
                                            "release mismatch); transient: it lifts by itself (no canary beacons "
                                            "yet, split mismatch, incident, few sessions). Always present in the "
                                            "verdict endpoint's answers"},
                    "severity": {"enum": ["none", "minor", "major", "critical"]},
                    "at": {"type": "integer"}, "emitted_at": {"type": "integer"},
                    "policy": {"type": "object"}, "reasons": {"type": "array", "items": {"type": "string"}},
                    "reason_codes": {"type": "array", "items": {"enum": [c.value for c in ReasonCode]},
                                     "description": "one per reason, in order: what code acts on"},
                    "overrides": {"type": "array", "items": {"type": "object"}},
                    "metrics": {"type": "array", "items": {"type": "object"}},
                    "data_quality": {"type": "object"}, "detectors": {"type": "object"},
                    "inputs": {"type": "object"},
                    "release": {"type": "object", "description": "only when the verdict endpoint was given image "
                                                                 "or release: what was asked, its tag (image), the "
                                                                 "rollout's canary, and whether they match",
                                "properties": {"image": {"type": "string"}, "release": {"type": "string"},
                                               "tag": {"type": ["string", "null"]}, "canary": {"type": "string"},
                                               "match": {"type": "boolean"}}},
                    "judged": {"type": "object", "description": "only on a release mismatch: the seq, verdict, "
                                                                "hold and reasons of the release the rollout judges"},
                }},
            "Rollout": {
                "type": "object", "required": ["id", "app", "canary", "baseline", "started_at", "policy"],
                "properties": {
                    "id": {"type": "string"}, "app": {"type": "string"}, "canary": {"type": "string"},
                    "baseline": {"type": "string"}, "started_at": {"type": "integer"},
                    "ended_at": {"type": ["integer", "null"]},
                    "end_reason": {"type": ["string", "null"],
                                   "description": "decided: VERDICT (CODE), verdict #SEQ; superseded by ID; or a "
                                                  "person's end (null)"},
                    "expected_share": {"type": ["number", "null"], "description": "the share at the start"},
                    "revision": {"type": ["string", "null"],
                                 "description": "the deployment tool's revision it judges (Flagger: "
                                                "NAMESPACE/NAME@CHECKSUM, bound at the first hook call)"},
                    "share_changes": {"type": "array", "description": "[at (epoch ms), share] in time order: the "
                                                                       "share in force from at on",
                                      "items": {"type": "array", "minItems": 2, "maxItems": 2}},
                    "policy": {"type": "object"}, "dry_run_policies": {"type": "array", "items": {"type": "string"}},
                    "verdict": {"oneOf": [{"$ref": "#/components/schemas/Verdict"}, {"type": "null"}]},
                }},
            "RolloutStart": {
                "type": "object", "required": ["app", "canary", "baseline"], "additionalProperties": False,
                "description": "canary and baseline must differ; id defaults to APP:CANARY",
                "properties": {
                    "id": _ID_SCHEMA, "app": _NAME_SCHEMA, "canary": _NAME_SCHEMA, "baseline": _NAME_SCHEMA,
                    "policy": _POLICY_TEXT,
                    "expected_share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "started_at": _EPOCH_MS,
                    "dry_run_policies": {"type": "array", "maxItems": MAX_DRY_RUN_POLICIES,
                                         "items": {**_POLICY_TEXT, "minLength": 1},
                                         "description": "policies of distinct names"},
                }},
            "RolloutRegister": {
                "type": "object", "required": ["app"], "additionalProperties": False,
                "description": "give canary or image (its tag is the release); without baseline, the release the "
                               "app's latest rollout left live",
                "properties": {
                    "app": _NAME_SCHEMA, "canary": _NAME_SCHEMA, "baseline": _NAME_SCHEMA,
                    "image": {"type": "string", "minLength": 1, "maxLength": MAX_IMAGE},
                    "policy": _POLICY_TEXT,
                    "expected_share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                                       "description": "the share now: a different one on an existing rollout "
                                                      "changes it from now on"},
                    "dry_run_policies": {"type": "array", "maxItems": MAX_DRY_RUN_POLICIES,
                                         "items": {**_POLICY_TEXT, "minLength": 1}},
                    "supersede": {"type": "boolean", "description": "end the app's other running rollouts "
                                                                    "(default true)"},
                }},
            "ShareChange": {
                "type": "object", "required": ["expected_share"], "additionalProperties": False,
                "properties": {"expected_share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                               "at": {**_EPOCH_MS, "description": "default now; not before the last change"}}},
            "Override": {
                "type": "object", "required": ["action", "actor", "reason"], "additionalProperties": False,
                "properties": {
                    "action": {"enum": ["promote", "hold", "rollback"]}, "actor": _TEXT,
                    "reason": _TEXT, "ticket": _TEXT,
                    "rollout": {"type": "string", "description": "ignored: the path's"},
                    "at": _EPOCH_MS, "expires_at": {**_EPOCH_MS, "description": "after at, and not yet passed"},
                    "ttl_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 366 * 86_400},
                }},
            "FlaggerWebhook": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 253}, "namespace": {"type": "string", "maxLength": 253},
                "phase": {"type": "string", "maxLength": 64},
                "checksum": {"type": "string", "maxLength": 64,
                             "description": "the canary revision; the first one asked about while Flagger analyses "
                                            "binds the rollout, another gets 409"},
                "metadata": {"type": "object", "properties": {
                    "rollout": _ID_SCHEMA, "app": _NAME_SCHEMA,
                    "release": {**_NAME_SCHEMA, "description": "the release Flagger deploys: only that release's "
                                                               "rollout answers"},
                    "baseline": {**_NAME_SCHEMA, "description": "with app and release, the rollout hook registers "
                                                                "APP:RELEASE against it"},
                    "token": {"type": "string", "maxLength": 512,
                              "description": "the API or hook token, kept out of Flagger's events (a ?token= "
                                             "URL shows in them)"}}}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/healthz": {"get": {"security": [], "summary": "Liveness and readiness",
                             "responses": {"200": {"description": "ok; ready (bool): the worker owns its partitions "
                                                                  "(listed in partitions) and has read back its "
                                                                  "published verdicts"}}}},
        "/readyz": {"get": {"security": [], "summary": "Readiness (for a probe)",
                            "responses": {"200": {"description": "ready: owns its partitions, every stage-1 "
                                                                 "partition sends"},
                                          "503": {"description": "not ready: reason says why (joining the group, "
                                                                 "or a stage-1 partition rebuilding after a "
                                                                 "failed send, listed in failing)"}}}},
        "/metrics": {"get": {"security": [], "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/v1/beacons": {
            "post": {"security": [], "summary": "Ingest beacons (JSON, JSON array, NDJSON, text/plain from "
                                                "sendBeacon, form encoding; canonical, web-vitals, Boomerang, "
                                                "Datadog RUM, OTLP/JSON)",
                     "parameters": [{"name": "app", "in": "query", "required": False, "schema": {"type": "string"}},
                                    {"name": "release", "in": "query", "required": False,
                                     "schema": {"type": "string"}}],
                     "responses": {"202": {"description": "accepted, rejected (sent to the DLQ) and duplicate "
                                                          "counts, with the first errors"},
                                   "400": _ERROR, "403": {**_ERROR, "description": "origin not allowed"},
                                   "413": _ERROR, "429": _ERROR, "503": _ERROR}},
            "get": {"security": [], "summary": "Boomerang image beacons (parameters in the query)",
                    "responses": {"202": {"description": "as POST"}, "400": _ERROR, "429": _ERROR}},
            "options": {"security": [], "summary": "CORS preflight",
                        "responses": {"204": {"description": "allowed"}, "403": _ERROR}}},
        "/v1/rumgate.js": {"get": {"security": [], "summary": "The browser snippet (web-vitals included)",
                                   "responses": {"200": {"description": "JavaScript"},
                                                 "503": {"description": "npm ci --prefix streams/ingest/web not run"}}}},
        "/v1/openapi.json": {"get": {"security": [], "summary": "This description",
                                     "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
        "/v1/rollouts": {
            "get": {"summary": "All rollouts with their latest verdict",
                    "responses": {"200": {"description": "rollouts"}, **_AUTH}},
            "post": {"summary": "Start a rollout",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/RolloutStart"}}}},
                     "responses": {"201": _JSON("#/components/schemas/Rollout", "started"),
                                   "400": _ERROR, "409": _ERROR, **_AUTH}}},
        "/v1/rollouts/{id}": {
            "get": {"parameters": _ID, "summary": "One rollout, its latest verdict and explanation",
                    "responses": {"200": _JSON("#/components/schemas/Rollout", "the rollout"), "404": _ERROR, **_AUTH}},
            "put": {"parameters": _ID, "summary": "Register a rollout idempotently (a deployment tool at every deploy, "
                                                  "e.g. Argo's first analysis step); a new one supersedes the app's "
                                                  "other running rollouts",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/RolloutRegister"}}}},
                    "responses": {"201": _JSON("#/components/schemas/Rollout", "created (registered: created, "
                                                                               "superseded: ids)"),
                                  "200": _JSON("#/components/schemas/Rollout", "registered before (registered: "
                                                                               "existing, or share changed)"),
                                  "400": _ERROR, "409": {**_ERROR, "description": "the id names another rollout"},
                                  **_AUTH}}},
        "/v1/rollouts/{id}/share": {"post": {
            "parameters": _ID, "summary": "Change the expected canary share from now (or at) on",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ShareChange"}}}},
            "responses": {"200": _JSON("#/components/schemas/Rollout", "changed"), "400": _ERROR, "404": _ERROR,
                          "409": {**_ERROR, "description": "the rollout has ended"}, **_AUTH}}},
        "/v1/rollouts/{id}/end": {"post": {"parameters": _ID, "summary": "End a rollout",
                                           "responses": {"200": _JSON("#/components/schemas/Rollout", "ended"),
                                                         "404": _ERROR, "409": _ERROR, **_AUTH}}},
        "/v1/rollouts/{id}/verdict": {"get": {
            "parameters": [
                *_ID,
                {"name": "image", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IMAGE},
                 "description": "the image being deployed (Argo: the pod template's); its tag must be the rollout's "
                                "canary, or the answer is a final hold with code release_mismatch"},
                {"name": "release", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IMAGE},
                 "description": "the release being deployed, compared with the canary like image's tag (give one "
                                "of image and release)"}],
            "summary": "Latest verdict (Argo Rollouts web provider, step analysis: promote → Successful, rollback → "
                       "Failed, continue/hold → Inconclusive; background analysis: hold final → Inconclusive, "
                       "pausing the Rollout). With image or release, bound to that release",
            "responses": {"200": _JSON("#/components/schemas/Verdict", "the latest verdict, or continue; with "
                                                                       "hold always present"),
                          "400": _ERROR, "404": _ERROR, **_AUTH}}},
        "/v1/rollouts/{id}/series": {"get": {
            "parameters": [
                *_ID,
                {"name": "metric", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 64}, "description": "one chart's series"},
                {"name": "segment", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 64}, "description": "with metric"}],
            "summary": "The rollout page's chart series, from the verdict history (columns aligned with at)",
            "responses": {"200": {"description": "series"}, "400": _ERROR,
                          "404": {**_ERROR, "description": "no such rollout, or no series for that metric/segment"},
                          **_AUTH}}},
        "/v1/rollouts/{id}/verdicts": {"get": {"parameters": _ID, "summary": "Every verdict (audit history)",
                                               "responses": {"200": {"description": "verdict events"},
                                                             "404": _ERROR, **_AUTH}}},
        "/v1/rollouts/{id}/overrides": {
            "get": {"parameters": _ID, "summary": "Overrides on record",
                    "responses": {"200": {"description": "overrides"}, "404": _ERROR, **_AUTH}},
            "post": {"parameters": _ID, "summary": "Force promote, hold or rollback, with actor and reason",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Override"}}}},
                     "responses": {"201": {"description": "recorded"}, "400": _ERROR, "404": _ERROR, **_AUTH}}},
        "/": {"get": {"summary": "The rollouts page (HTML): each rollout with its latest verdict",
                      "parameters": [{"name": "fragment", "in": "query", "required": False,
                                      "schema": {"enum": ["1"]}, "description": "the page's live part only"}],
                      "responses": {"200": {"description": "text/html"}, **_AUTH}}},
        "/rollouts/{id}": {"get": {"summary": "One rollout's page (HTML): its verdict, timeline and evidence, live",
                                   "parameters": [*_ID, {"name": "fragment", "in": "query", "required": False,
                                                         "schema": {"enum": ["1"]},
                                                         "description": "the page's live part only"}],
                                   "responses": {
                                       "200": {"description": "the page, or with fragment=1 its live part (with an "
                                                              "ETag)",
                                               "content": {"text/html": {"schema": {"type": "string"}}}},
                                       "304": {"description": "fragment=1 with If-None-Match: no verdict since"},
                                       "404": {"description": "no such rollout",
                                               "content": {"text/html": {"schema": {"type": "string"}}}},
                                       **_AUTH}}},
        **{f"/v1/flagger/{hook}": {"post": {
            "summary": summary,
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/FlaggerWebhook"}}}},
            "parameters": [
                {"name": "rollout", "in": "query", "required": False, "schema": _ID_SCHEMA},
                {"name": "app", "in": "query", "required": False, "schema": _NAME_SCHEMA,
                 "description": "the app's one running rollout (409 naming them when it has several)"},
                {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "the API token (Flagger cannot send headers)"}],
            "responses": {"200": {"description": "go"},
                          "409": {"description": "not this verdict; or (`error`) the app has several running rollouts"},
                          "400": _ERROR, "404": _ERROR, **_AUTH}}}
           for hook, summary in (("confirm-promotion", "200 only when the verdict is promote"),
                                 ("rollback", "200 only when the verdict is rollback"),
                                 ("rollout", "200 unless the verdict is rollback"),
                                 ("confirm-traffic-increase", "200 unless the verdict is rollback or a final hold"))},
    },
}


async def openapi(request: web.Request) -> web.Response:
    return json(OPENAPI)


ROUTES = [web.get("/v1/openapi.json", openapi)]
