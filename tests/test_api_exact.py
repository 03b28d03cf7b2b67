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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
from harbour.api.schemas import FORMATS

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
EXAMPLES = 25
"""Per operation: about 15 s for all of them on a quiet machine."""
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


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


def test_no_request_the_schema_allows_is_refused_as_invalid(deployment: Deployment) -> None:
    headers = {"Authorization": f"Bearer {deployment.token}"}
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
            if response.status_code == 422:
                refused.append(f"{case.operation.label}: {_refusal(response)[:300]}")

        answers()
    assert not refused, "\n".join(sorted(set(refused)))


def _concrete(template: str, ids: dict[str, str]) -> str:
    values = {**ids, "credential_id": ids["user_id"], "entry_id": ids["user_id"], "name": "node1", "index": "0"}
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    assert "{" not in template, template
    return template


def test_every_other_method_is_405_naming_exactly_the_paths_methods(deployment: Deployment) -> None:
    openapi = deployment.app.openapi()
    headers = {"Authorization": f"Bearer {deployment.token}"}
    wrong: list[str] = []
    with TestClient(deployment.app) as client:
        for template, operations in openapi["paths"].items():
            declared = sorted(method.upper() for method in operations)
            path = _concrete(template, deployment.ids)
            for method in sorted(set(METHODS) - set(declared)):
                response = client.request(method, path, headers=headers)
                allow = response.headers.get("allow")
                if response.status_code != 405 or allow != ", ".join(declared):
                    wrong.append(f"{method} {path}: {response.status_code}, Allow {allow!r}, expected {declared}")
    assert not wrong, "\n".join(wrong)
