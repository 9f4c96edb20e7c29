"""A CustomResourceDefinition's schema as JSON Schema, to validate sample manifests against
CRDs kept as fixtures (tests/test_deploy_flagger.py, tests/test_deploy_argo.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import yaml


def json_schema(node):
    """A CRD's structural schema as JSON Schema: ``x-kubernetes-int-or-string`` as integer or
    string; ``format`` and the other x-kubernetes keys dropped (annotations, or CEL rules that
    no field of the sample reaches); objects with properties closed to unknown fields, as
    kubectl's default strict field validation refuses them, unless they preserve them."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k not in ("format", "description")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_version_schema(path: Path, name: str, version: str) -> dict:
    """The JSON Schema of one served, stored version of the CRD ``name`` in ``path``."""
    crd = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert crd["kind"] == "CustomResourceDefinition" and crd["metadata"]["name"] == name
    [found] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert found["served"] and found["storage"]
    schema = json_schema(found["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # the API server checks ObjectMeta itself
    return schema


@lru_cache(maxsize=None)
def _validator(path: str, name: str, version: str):
    jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="comes with schemathesis (dev extras)")
    return jsonschema_rs.validator_for(crd_version_schema(Path(path), name, version))


def crd_errors(path: Path, name: str, version: str, doc: dict) -> list[str]:
    """What the schema refuses in ``doc``, each as ``instance/path: message``."""
    validator = _validator(str(path), name, version)
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(doc)]
