"""docs/openapi.yaml describes /api/v1/ as it answers: every documented answer is reached live and conforms.

``assert_conforms`` is the checker the fuzz tests (tests/meters/test_ingest_fuzz.py,
tests/payments/test_x402_fuzz.py) and the security matrix use too: the status must be documented for
the operation, the body must match its documented JSON schema (JSON Schema 2020-12, as OpenAPI 3.1
uses), and documented required headers must be there, base64 JSON headers decoded and checked too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
import time_machine
import yaml
from bsv import P2PKH, PrivateKey, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte
from django.conf import settings
from django.db import DatabaseError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from payments import keys, x402
from payments.models import LedgerTransaction
from payments.networks import NetworkUnavailable, Reply
from payments.networks.local import LocalLedger

SPEC_FILE = settings.BASE_DIR / "docs" / "openapi.yaml"
SPEC_URI = "urn:energypay:openapi"
READINGS = "/api/v1/readings"
COMMUNITY = "/api/v1/community"
NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)


# --- the checker ----------------------------------------------------------------------------------


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_FILE.read_text())


@cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource(contents=spec(), specification=DRAFT202012))


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in ("", *parts))


def validator(*parts: str) -> Draft202012Validator:
    """A validator for the schema at ``parts`` inside the document, whose $refs resolve in the document."""
    return Draft202012Validator({"$ref": f"{SPEC_URI}#{_pointer(*parts)}"}, registry=_registry())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _registry().resolver().lookup(SPEC_URI + node["$ref"]).contents
    return node


def _problems(check: Draft202012Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in check.iter_errors(instance)
    ]


def operation(path: str, method: str) -> dict[str, Any]:
    method = "get" if method.lower() == "head" else method.lower()
    assert method in spec()["paths"][path], f"{method.upper()} {path} is not in docs/openapi.yaml"
    return spec()["paths"][path][method]


def assert_conforms(response, path: str, method: str) -> Any:
    """Assert ``response`` is one docs/openapi.yaml documents for ``method path``; returns its JSON body."""
    op_method = "get" if method.lower() == "head" else method.lower()
    status = str(response.status_code)
    responses = operation(path, method)["responses"]
    assert status in responses, (
        f"{method.upper()} {path} answered {status}, which docs/openapi.yaml does not document "
        f"(documented: {sorted(responses)}): {response.content[:300]!r}"
    )
    documented = _resolve(responses[status])
    for name, header in documented.get("headers", {}).items():
        header = _resolve(header)
        if name not in response:
            assert not header.get("required"), f"{status} from {path} lacks its required {name} header"
            continue
        value = response[name]
        schema_at = ["paths", path, op_method, "responses", status, "headers", name]
        if "$ref" in responses[status]["headers"][name]:
            schema_at = responses[status]["headers"][name]["$ref"].removeprefix("#/").split("/")
        problems = _problems(validator(*schema_at, "schema"), value)
        assert not problems, f"{name} header of {status} from {path}: {problems}"
        if "contentSchema" in header["schema"]:
            decoded = json.loads(base64.b64decode(value, validate=True))
            problems = _problems(validator(*schema_at, "schema", "contentSchema"), decoded)
            assert not problems, f"decoded {name} header of {status} from {path}: {problems}"
    if method.lower() == "head":
        assert response.content == b""
        return None
    content = documented.get("content", {})
    media_type = response["Content-Type"].split(";")[0].strip()
    assert media_type in content, f"{status} from {path} is {media_type}; documented: {sorted(content)}"
    body = json.loads(response.content)
    problems = _problems(
        validator("paths", path, op_method, "responses", status, "content", media_type, "schema"), body
    )
    assert not problems, f"{status} body from {path} does not match docs/openapi.yaml: {problems}\n{body}"
    return body


def documented_answers() -> set[tuple[str, str, str]]:
    return {
        (path, method, status)
        for path, item in spec()["paths"].items()
        for method, op in item.items()
        for status in op["responses"]
    }


# --- helpers for paying, shared with the fuzz and security tests ---------------------------------


def pay(parent: Transaction, key: PrivateKey, satoshis: int, to: str | None = None) -> Transaction:
    """Sign, as an x402 client would with bsv-sdk, ``satoshis`` to the utility from ``parent``'s output 0."""
    tx = Transaction()
    tx.add_input(
        TransactionInput(
            source_transaction=parent, source_output_index=0, unlocking_script_template=P2PKH().unlock(key)
        )
    )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(to or keys.utility_address()), satoshis=satoshis))
    tx.add_output(
        TransactionOutput(locking_script=P2PKH().lock(key.address(network=keys.address_network())), change=True)
    )
    tx.fee(SatoshisPerKilobyte(settings.FEE_SATS_PER_KB))
    tx.sign()
    return tx


def payment_header(raw_hex: str, **overrides: Any) -> str:
    body = {"x402Version": 1, "scheme": "exact", "network": x402.network_name(), "payload": {"transaction": raw_hex}}
    body.update(overrides)
    return base64.b64encode(json.dumps(body).encode()).decode()


def funded_coin(ledger: LocalLedger, key: PrivateKey, satoshis: int = 50_000) -> Transaction:
    """A faucet transaction paying ``satoshis`` to ``key`` (output 0), ready to spend."""
    txid = ledger.fund(key.address(network=keys.address_network()), satoshis)
    return Transaction.from_hex(LedgerTransaction.objects.get(txid=txid).raw)


# --- the document itself ------------------------------------------------------------------------


def test_the_document_is_openapi_3_1_with_valid_schemas_and_resolvable_refs():
    document = spec()
    assert document["openapi"].startswith("3.1.")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    refs = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        _resolve({"$ref": ref})  # raises if it points nowhere


def _api_routes(patterns: list, prefix: str = "") -> set[str]:
    routes = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes |= _api_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/"):
            routes.add("/" + prefix + str(pattern.pattern))
    return routes


# The document itself and the page that renders it: under /api/, but not operations of the API.
DOCUMENTATION_ROUTES = {"/api/docs/", "/api/docs/openapi.yaml"}


def test_every_api_url_is_documented_and_every_documented_path_exists():
    assert _api_routes(get_resolver().url_patterns) - DOCUMENTATION_ROUTES == set(spec()["paths"]), (
        "docs/openapi.yaml and the /api/ URLs differ: describe a new API URL there (and drop a removed one)"
    )


def test_the_request_examples_match_the_request_schema_and_are_accepted_live(client, meter_and_token):
    _, token = meter_and_token
    content = operation(READINGS, "post")["requestBody"]["content"]["application/json"]
    check = validator("paths", READINGS, "post", "requestBody", "content", "application/json", "schema")
    with time_machine.travel(NOW, tick=False):
        for name, example in content["examples"].items():
            assert not _problems(check, example["value"]), name
            response = _post_readings(client, example["value"], token)
            body = assert_conforms(response, READINGS, "post")
            assert response.status_code == 200 and body["rejected"] == [], (name, body)


def test_the_request_schema_refuses_what_the_server_refuses_as_a_whole():
    check = validator("paths", READINGS, "post", "requestBody", "content", "application/json", "schema")
    for body in ([], {"readings": []}, {"readings": [], "x": 1}, {"readings": {"a": 1}}, "text", None):
        assert _problems(check, body), body


# --- every documented answer, reached live --------------------------------------------------------


class Unreachable:
    name = "local"

    def broadcast(self, raw_hex: str) -> Reply:
        raise NetworkUnavailable("connection refused")

    def status(self, txid: str) -> Reply:
        raise NetworkUnavailable("connection refused")


def _post_readings(client: Client, body: Any, token: str | None, **extra: str):
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(READINGS, data, content_type="application/json", **extra)


ONE = {"timestamp": "2026-11-22T14:00:00Z", "energy_kwh": "10.5"}


def _readings_200(client, token, monkeypatch, ledger):
    return _post_readings(client, {"readings": [ONE, {"timestamp": "2026-11-22T13:59:00", "energy_kwh": 1}]}, token)


def _readings_400(client, token, monkeypatch, ledger):
    return _post_readings(client, '{"timestamp": "2026-11-22T14:00:00Z", "energy_kwh": NaN}', token)


def _readings_401(client, token, monkeypatch, ledger):
    return _post_readings(client, ONE, "mtr_not-a-token")


def _readings_413(client, token, monkeypatch, ledger):
    return _post_readings(client, {"readings": [ONE] * (settings.INGEST_MAX_READINGS + 1)}, token)


def _readings_415(client, token, monkeypatch, ledger):
    return client.post(READINGS, json.dumps(ONE), content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {token}")


def _readings_429(client, token, monkeypatch, ledger):
    monkeypatch.setattr(settings, "INGEST_RATE_LIMIT_PER_MINUTE", 1)
    _post_readings(client, ONE, token)
    return _post_readings(client, ONE, token)


def _readings_503(client, token, monkeypatch, ledger):
    from meters import api

    def broken(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(api, "ingest_locked", broken)
    return _post_readings(client, ONE, token)


def _readings_431(client, token, monkeypatch, ledger):
    filler = {f"X-Filler-{n}": "x" * 1000 for n in range(settings.API_MAX_HEADER_BYTES // 1000 + 1)}
    return _post_readings(client, ONE, token, headers=filler)


def _community_200(client, token, monkeypatch, ledger):
    key = PrivateKey()
    tx = pay(funded_coin(ledger, key), key, settings.COMMUNITY_PRICE_SATS)
    return client.get(COMMUNITY, headers={"X-PAYMENT": payment_header(tx.hex())})


def _community_402(client, token, monkeypatch, ledger):
    return client.get(COMMUNITY)


def _community_431(client, token, monkeypatch, ledger):
    return client.get(COMMUNITY, headers={"X-PAYMENT": "A" * (settings.API_MAX_PAYMENT_HEADER_BYTES + 4)})


def _community_503(client, token, monkeypatch, ledger):
    key = PrivateKey()
    tx = pay(funded_coin(ledger, key), key, settings.COMMUNITY_PRICE_SATS)
    monkeypatch.setattr(x402, "get_network", Unreachable)
    return client.get(COMMUNITY, headers={"X-PAYMENT": payment_header(tx.hex())})


ARC = "/api/v1/arc/callback"
ARC_TOKEN = "arc-callback-token-for-the-openapi-tests"


def _arc_post(client, monkeypatch, body: Any, token: str = ARC_TOKEN):
    monkeypatch.setattr(settings, "ARC_CALLBACK_TOKEN", ARC_TOKEN)
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(ARC, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def _arc_status(**fields: Any) -> dict[str, Any]:
    return {"timestamp": "2026-11-22T14:06:59.123456789Z", "txid": "ab" * 32, "txStatus": "MINED", **fields}


def _arc_200(client, token, monkeypatch, ledger):
    return _arc_post(client, monkeypatch, _arc_status(blockHeight=837394))


def _arc_400(client, token, monkeypatch, ledger):
    return _arc_post(client, monkeypatch, '{"count": 1, "callbacks": []}')


def _arc_401(client, token, monkeypatch, ledger):
    return _arc_post(client, monkeypatch, _arc_status(), token="not-the-callback-token")


def _arc_413(client, token, monkeypatch, ledger):
    return _arc_post(client, monkeypatch, _arc_status(merklePath="ab" * 40_000))


def _arc_503(client, token, monkeypatch, ledger):
    from payments import arc_callbacks

    def broken(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(arc_callbacks, "_apply", broken)
    return _arc_post(client, monkeypatch, _arc_status())


def _me(url: str, status: str) -> Callable:
    def scenario(client, token, monkeypatch, ledger):
        from energypay.accounts import tokens
        from meters.models import Meter

        household = Meter.objects.get().household
        pat = tokens.issue(household.user, "scenario", NOW)[1]
        headers = {"Authorization": f"Bearer {pat}"}
        if status == "401":
            return client.get(url)
        if status == "400":
            return client.get(url, {"limit": "0", "resolution": "week"}, headers=headers)
        if status == "429":
            monkeypatch.setattr(settings, "API_TOKEN_RATE_LIMIT_PER_MINUTE", 1)
            client.get(url, headers=headers)
        return client.get(url, headers=headers)

    return scenario


ME = {"/api/v1/me/usage": ("200", "400", "401", "429"), "/api/v1/me/balance": ("200", "401", "429")}
ME["/api/v1/me/settlements"] = ME["/api/v1/me/usage"]

SCENARIOS: dict[tuple[str, str, str], Callable] = {
    (ARC, "post", "200"): _arc_200,
    (ARC, "post", "400"): _arc_400,
    (ARC, "post", "401"): _arc_401,
    (ARC, "post", "413"): _arc_413,
    (ARC, "post", "503"): _arc_503,
    **{(url, "get", status): _me(url, status) for url, statuses in ME.items() for status in statuses},
    (READINGS, "post", "200"): _readings_200,
    (READINGS, "post", "400"): _readings_400,
    (READINGS, "post", "401"): _readings_401,
    (READINGS, "post", "413"): _readings_413,
    (READINGS, "post", "415"): _readings_415,
    (READINGS, "post", "429"): _readings_429,
    (READINGS, "post", "431"): _readings_431,
    (READINGS, "post", "503"): _readings_503,
    (COMMUNITY, "get", "200"): _community_200,
    (COMMUNITY, "get", "402"): _community_402,
    (COMMUNITY, "get", "431"): _community_431,
    (COMMUNITY, "get", "503"): _community_503,
}


def test_every_documented_answer_has_a_live_scenario():
    assert set(SCENARIOS) == documented_answers(), "add a scenario for each answer docs/openapi.yaml documents"


@pytest.mark.parametrize(("path", "method", "status"), sorted(SCENARIOS), ids="-".join)
def test_the_live_answer_is_the_documented_one(client, meter_and_token, monkeypatch, path, method, status):
    _, token = meter_and_token
    with time_machine.travel(NOW, tick=False):
        response = SCENARIOS[path, method, status](client, token, monkeypatch, LocalLedger())
    assert str(response.status_code) == status, response.content[:500]
    assert_conforms(response, path, method)


def test_head_is_get_without_a_body(client, db):
    response = client.head(COMMUNITY)
    assert response.status_code == 402
    assert_conforms(response, COMMUNITY, "head")


@pytest.mark.parametrize(
    ("path", "method", "allowed"),
    [
        (READINGS, "get", "POST"),
        (READINGS, "put", "POST"),
        (READINGS, "delete", "POST"),
        (COMMUNITY, "post", "GET, HEAD"),
        (COMMUNITY, "put", "GET, HEAD"),
        (COMMUNITY, "delete", "GET, HEAD"),
        (ARC, "get", "POST"),
        (ARC, "put", "POST"),
    ],
)
def test_undocumented_methods_are_405_with_allow(client, db, path, method, allowed):
    assert method not in spec()["paths"][path]
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Allow"] == allowed


def test_the_checker_catches_an_undocumented_status_and_a_body_off_schema(client, db):
    """The checker itself can fail: a 418, a 402 without PAYMENT-REQUIRED and one without ``accepts`` are refused."""
    from django.http import JsonResponse

    with pytest.raises(AssertionError, match="does not document"):
        assert_conforms(JsonResponse({"error": {"code": "teapot", "message": "x"}}, status=418), COMMUNITY, "get")
    with pytest.raises(AssertionError, match="PAYMENT-REQUIRED"):
        assert_conforms(JsonResponse({"x402Version": 1, "error": "x"}, status=402), COMMUNITY, "get")
    without_accepts = JsonResponse({"x402Version": 1, "error": "x"}, status=402)
    without_accepts["PAYMENT-REQUIRED"] = client.get(COMMUNITY)["PAYMENT-REQUIRED"]
    with pytest.raises(AssertionError, match="not valid under any"):
        assert_conforms(without_accepts, COMMUNITY, "get")
    with pytest.raises(AssertionError, match="Retry-After"):
        assert_conforms(JsonResponse({"error": {"code": "rate_limited", "message": "x"}}, status=429), READINGS, "post")
