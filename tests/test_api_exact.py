"""``/openapi.json`` states exactly what the server accepts: no schema-valid request is refused as invalid.

Schemathesis generates requests that keep to the schema for every operation of
the app (so routes added later are covered without a word here), on made-up and
on real resources, and sends them as a user who holds every role. None may be
answered ``422``: a request the schema allows and the server refuses means a
rule the schema does not state. The constraints a regular expression cannot say
are the schema's named formats (``api/schemas.py`` ``FORMATS``); each has a
generator (``api_formats.py``) that makes values of that format, and only those. A value that
is well formed but names nothing (an unknown id, node or event) is a 404, and
one the state refuses a 409: neither is a 422.

The second test sends every path the schema has with every method it does not
have: each answer is a 405 whose ``Allow`` lists exactly the path's methods.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode

from api_formats import GENERATORS
from custody_env import ETH, CustodyEnv
from harbour.api.app import create_app
from harbour.api.schemas import FORMATS, UUID_PATTERN

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
EXAMPLES = 8
"""Per operation (about 100 operations): about 15 s for all of them on a quiet 2-core machine."""
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
UNSTATED = {
    "POST /v1/policy/proposals": "the policy document's own rules (docs/policy.md) are the policy engine's; "
    "the schema states only that it is an object",
}
"""Operations whose body the schema does not yet state in full, and why: their 422s are not counted."""
_PERIOD = ("start must be earlier than end", "a period is at most 366 days")
BETWEEN_PARAMETERS = {
    "GET /v1/vaults/{vault_id}/history": _PERIOD,
    "GET /v1/vaults/{vault_id}/statement": _PERIOD,
}
"""Rules that relate two parameters, which JSON Schema cannot state (the parameters' descriptions say them):
only these refusals of these operations are not counted."""


@dataclass
class Deployment:
    app: FastAPI
    token: str
    ids: dict[str, str]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with CustodyEnv(tmp_path_factory.mktemp("api-exact")) as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, _ = env.vault(fund=ETH)
        everyone = env.add_person("everyone", ["admin", "initiator", "approver", "auditor", "viewer"], key=True)
        spare = env.add_person("spare", ["viewer"])
        pending = env.custody.submit_withdrawal(
            everyone.actor, vault_id=vault_id, asset="ETH", to=DEST, amount=1000, idempotency_key="pending"
        )
        ids = {"vault_id": vault_id, "tx_id": pending["id"], "user_id": spare.actor.user_id}
        yield Deployment(create_app(env.custody), everyone.token, ids)


def test_every_named_format_has_a_generator() -> None:
    assert set(GENERATORS) == set(FORMATS)


def _refusal(response: Any) -> str:
    body = response.json()
    errors = body.get("errors") or [{"location": "", "message": body.get("detail", "")}]
    return "; ".join(f"{e['location']}: {e['message']}" for e in errors)


def _as_sent(value: Any) -> Any:
    """``value`` as the server reads its JSON text: a number exactly as written (``1.157920892373162e+77`` is
    not 2**256 - 1, whatever doubles say)."""
    if isinstance(value, float) and value.is_integer():
        return int(decimal.Decimal(repr(value)))
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    return value


def _body_keeps_to_the_schema(openapi: dict[str, Any], case: Any) -> bool:
    """Whether the case's body, read exactly, validates (the generator's integer bounds pass through doubles)."""
    operation = openapi["paths"][case.operation.path][case.method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None or not isinstance(case.body, dict | list | str | int | float | bool):
        return True
    root = {**content["schema"], "components": openapi["components"]}
    return bool(jsonschema_rs.validator_for(root).is_valid(_as_sent(case.body)))


def test_no_request_the_schema_allows_is_refused_as_invalid(deployment: Deployment) -> None:
    headers = {"Authorization": f"Bearer {deployment.token}"}
    openapi = deployment.app.openapi()
    refused: list[str] = []
    schema = schemathesis.openapi.from_asgi("/openapi.json", deployment.app)
    for result in schema.get_all_operations():
        assert not isinstance(result, Err), result.err()
        operation = result.ok()
        names = {parameter.name for parameter in operation.path_parameters}
        real = {name: value for name, value in deployment.ids.items() if name in names}
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers(case: Any) -> None:
            response = case.call(headers=headers)
            if (
                response.status_code == 422
                and case.operation.label not in UNSTATED
                and _body_keeps_to_the_schema(openapi, case)
                and not any(rule in _refusal(response) for rule in BETWEEN_PARAMETERS.get(case.operation.label, ()))
            ):
                refused.append(f"{case.operation.label}: {_refusal(response)[:300]}")

        answers()
    assert not refused, "\n".join(sorted(set(refused)))


ANY_ID = "00000000-0000-4000-8000-000000000000"


def _concrete(template: str, operations: dict[str, Any], ids: dict[str, str]) -> str:
    """The path with each parameter a value of its schema: a real id where there is one, else a well-formed one."""
    for operation in operations.values():
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "path":
                continue
            schema = parameter["schema"]
            if parameter["name"] in ids:
                value = ids[parameter["name"]]
            elif schema.get("type") == "integer":
                value = str(schema.get("minimum", 0))
            elif schema.get("pattern") == UUID_PATTERN:
                value = ANY_ID
            else:
                value = "node1"
            template = template.replace("{" + parameter["name"] + "}", value)
    assert "{" not in template, template
    return template


def test_every_other_method_is_405_naming_exactly_the_paths_methods(deployment: Deployment) -> None:
    openapi = deployment.app.openapi()
    headers = {"Authorization": f"Bearer {deployment.token}"}
    wrong: list[str] = []
    with TestClient(deployment.app) as client:
        for template, operations in openapi["paths"].items():
            declared = sorted(method.upper() for method in operations)
            path = _concrete(template, operations, deployment.ids)
            for method in sorted(set(METHODS) - set(declared)):
                response = client.request(method, path, headers=headers)
                allow = response.headers.get("allow")
                if response.status_code != 405 or allow != ", ".join(declared):
                    wrong.append(f"{method} {path}: {response.status_code}, Allow {allow!r}, expected {declared}")
    assert not wrong, "\n".join(wrong)


# -- the input rules, through the API ---------------------------------------------------------------------


def _call(deployment: Deployment, method: str, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {deployment.token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    with TestClient(deployment.app) as client:
        return client.request(method, path, json=body, headers=headers)


def _refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"], response.json()["detail"]


RESERVED = {"zero": 0, "ecrecover": 0x01, "point evaluation": 0x0A, "BLS12-381 map to G2": 0x11, "P256VERIFY": 0x100}


@pytest.mark.parametrize("number", RESERVED.values(), ids=list(RESERVED))
def test_the_api_refuses_to_pay_or_list_the_zero_address_or_a_precompile(deployment: Deployment, number: int) -> None:
    address = f"0x{number:040x}"
    withdrawal = {"vault_id": deployment.ids["vault_id"], "asset": "ETH", "to": address, "amount": "1000"}
    _refused(_call(deployment, "POST", "/v1/transactions", withdrawal, key=f"burn-{number}"), 422, "are lost")
    _refused(_call(deployment, "POST", "/v1/transactions/explain", withdrawal), 422, "are lost")
    entry = {"name": f"burn {number}", "address": address}
    _refused(_call(deployment, "POST", "/v1/address-book", entry), 422, "are lost")


def test_the_api_refuses_a_vault_paying_itself_or_its_address_in_the_book(deployment: Deployment) -> None:
    with TestClient(deployment.app) as client:
        vault = client.get(
            f"/v1/vaults/{deployment.ids['vault_id']}", headers={"Authorization": f"Bearer {deployment.token}"}
        ).json()
    own = vault["addresses"][0]["address"]
    withdrawal = {"vault_id": deployment.ids["vault_id"], "asset": "ETH", "to": own.lower(), "amount": "1000"}
    _refused(_call(deployment, "POST", "/v1/transactions", withdrawal, key="to-itself"), 409, "the vault's own address")
    _refused(_call(deployment, "POST", "/v1/transactions/explain", withdrawal), 409, "the vault's own address")
    entry = {"name": "ourselves", "address": own}
    _refused(_call(deployment, "POST", "/v1/address-book", entry), 409, "an address of the organisation's vault")


@pytest.mark.parametrize("value", ["ali\u202ece", "bob\x00", "zero\u200bwidth", "   ", "x" * 129])
def test_the_api_refuses_a_name_with_a_character_that_does_not_stand_for_itself(
    deployment: Deployment, value: str
) -> None:
    response = _call(deployment, "POST", "/v1/users", {"name": value, "roles": ["viewer"]})
    assert response.status_code == 422, response.text
    assert [e["location"] for e in response.json()["errors"]] == ["body.name"]


def test_the_api_refuses_a_note_with_a_bidirectional_control(deployment: Deployment) -> None:
    withdrawal = {"vault_id": deployment.ids["vault_id"], "asset": "ETH", "to": DEST, "amount": "1", "note": "a\u2066b"}
    response = _call(deployment, "POST", "/v1/transactions", withdrawal, key="bidi-note")
    assert response.status_code == 422 and response.json()["errors"][0]["location"] == "body.note"


@pytest.mark.parametrize("name", ["Spare", "SPARE", "spare ", " spare", "ｓｐａｒｅ"])
def test_a_user_name_is_one_name_whatever_its_case_width_or_spaces(deployment: Deployment, name: str) -> None:
    _refused(_call(deployment, "POST", "/v1/users", {"name": name, "roles": ["viewer"]}), 409, "exists")


def test_a_name_is_proposed_in_its_normal_form(deployment: Deployment) -> None:
    response = _call(deployment, "POST", "/v1/users", {"name": "  Zoe\u0308   Quinn ", "roles": ["viewer"]})
    assert response.status_code == 202, response.text
    assert "'Zoë Quinn'" in response.json()["changes"][0]["description"]
