"""The OpenAPI documents are valid, describe exactly the routes the app serves, and are served
unchanged (JSON and YAML) without the admin token."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from fakeshift import create_app
from fakeshift.contract import _inline_refs, canonical_path

ROOT = Path(__file__).resolve().parent.parent
FILES = {"blueshift": ROOT / "openapi" / "blueshift.yaml",
         "admin": ROOT / "openapi" / "fakeshift-admin.yaml"}
METHODS = {"get", "put", "post", "delete", "patch"}


def _document(name: str) -> dict:
    return yaml.safe_load(FILES[name].read_text(encoding="utf-8"))


def _operations(document: dict) -> dict[tuple[str, str], str]:
    """(canonical path, METHOD) -> operationId."""
    return {(canonical_path(path), method.upper()): operation["operationId"]
            for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS}


def _routes(app) -> dict[tuple[str, str], str]:
    """(canonical path, METHOD) -> view function name, for every route the app serves."""
    return {(canonical_path(rule.rule), method): rule.endpoint.split(".")[-1]
            for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.mark.parametrize("name", FILES)
def test_document_is_valid_openapi_3_1(name):
    document = _document(name)
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_every_operation_is_served():
    app = create_app({})
    routes = _routes(app)
    documented = {**_operations(_document("blueshift")), **_operations(_document("admin"))}
    assert set(routes) - set(documented) == set(), "routes missing from openapi/"
    assert set(documented) - set(routes) == set(), "documented operations the app does not serve"
    # operationId is the view's name, so the journal, fault rules and violations speak alike.
    assert {key: documented[key] for key in routes} == routes


def test_blueshift_paths_and_admin_paths_stay_in_their_own_documents():
    assert all(path.startswith(("/api/v1/", "/api/v2/")) or path == "/live"
               for path in _document("blueshift")["paths"])
    # `/` is fakeshift's own index, so it is described with the control plane.
    assert all(path.startswith("/_fakeshift/") or path == "/"
               for path in _document("admin")["paths"])


def test_every_blueshift_operation_lists_every_error_status_the_emulator_can_answer():
    statuses = {"200", "400", "401", "403", "404", "405", "409", "413", "422", "429", "431",
                "500", "502", "503", "504"}
    for path, item in _document("blueshift")["paths"].items():
        for method, operation in item.items():
            assert set(operation["responses"]) == statuses, f"{method.upper()} {path}"


def test_examples_conform_to_their_schemas():
    document = _document("blueshift")
    checked = 0
    for item in document["paths"].values():
        for operation in item.values():
            media = [operation.get("requestBody", {}).get("content", {}).get("application/json")]
            for response in operation["responses"].values():
                response = _inline_refs(response, document)
                media.append(response.get("content", {}).get("application/json"))
            for entry in filter(None, media):
                schema = _inline_refs(entry["schema"], document)
                examples = [e["value"] for e in entry.get("examples", {}).values()]
                if "example" in entry:
                    examples.append(entry["example"])
                for example in examples:
                    jsonschema.validate(example, schema, cls=jsonschema.Draft202012Validator)
                    checked += 1
    assert checked >= 20


# Where a schema holds further schemas (JSON Schema 2020-12's applicators).
_ONE_SCHEMA = ("items", "not", "contains", "additionalProperties", "propertyNames", "if", "then",
               "else", "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs")


def _schemas(document: dict):
    """(location, schema) for every schema object in an OpenAPI document: the components, each
    parameter's, header's and media type's schema, and every schema nested inside those."""
    pending = [(f"#/components/schemas/{name}", schema)
               for name, schema in document["components"]["schemas"].items()]

    def find_roots(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("example", "examples"):
                    continue  # values, not OpenAPI objects
                if key == "schema" and isinstance(value, dict):
                    pending.append((f"{where}/schema", value))
                elif where != "#/components" or key != "schemas":
                    find_roots(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                find_roots(item, f"{where}/{index}")

    find_roots(document["paths"], "#/paths")
    find_roots(document["components"], "#/components")
    while pending:
        where, schema = pending.pop()
        yield where, schema
        for key in _ONE_SCHEMA:
            if isinstance(schema.get(key), dict):
                pending.append((f"{where}/{key}", schema[key]))
        for key in _SCHEMA_LISTS:
            pending.extend((f"{where}/{key}/{i}", s) for i, s in enumerate(schema.get(key, ())))
        for key in _SCHEMA_MAPS:
            pending.extend((f"{where}/{key}/{n}", s) for n, s in schema.get(key, {}).items())


def test_every_blueshift_schema_has_a_type():
    # Code generators pick a Python type from `type`: without it, openapi-python-client typed
    # `const: true` as a literal it then wrote out as invalid Python, and a body of bare anyOf
    # clauses as Any. A `$ref` is typed by what it points to.
    schemas = list(_schemas(_document("blueshift")))
    assert len(schemas) > 100
    untyped = [where for where, schema in schemas if "$ref" not in schema and "type" not in schema]
    assert untyped == []


def test_every_blueshift_const_and_enum_value_is_of_its_schemas_type():
    for where, schema in _schemas(_document("blueshift")):
        values = [schema["const"]] if "const" in schema else schema.get("enum", [])
        for value in values:
            jsonschema.validate(value, {"type": schema["type"]})


@pytest.mark.parametrize("name", FILES)
def test_served_documents_equal_the_files_and_need_no_admin_token(name):
    client = create_app({"admin_token": "secret"}).test_client()
    as_yaml = client.get(f"/_fakeshift/openapi/{name}.yaml")
    as_json = client.get(f"/_fakeshift/openapi/{name}.json")
    assert as_yaml.status_code == as_json.status_code == 200
    assert as_yaml.mimetype == "application/yaml"
    assert as_json.mimetype == "application/json"
    assert as_yaml.get_data(as_text=True) == FILES[name].read_text(encoding="utf-8")
    assert as_json.json == _document(name)
    # Everything else on the control plane still needs the token.
    assert client.get("/_fakeshift/violations").status_code == 401


def test_unknown_document_is_a_404():
    client = create_app({}).test_client()
    assert client.get("/_fakeshift/openapi/other.json").status_code == 404
    assert client.get("/_fakeshift/openapi/blueshift.xml").status_code == 404


def test_documents_are_served_over_http(live_server):
    import requests

    response = requests.get(f"{live_server.url}/_fakeshift/openapi/blueshift.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == _document("blueshift")
