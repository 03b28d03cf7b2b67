"""The API against its own schema: ``/openapi.json`` declares every body, and every answer keeps to it.

The first tests read the schema: every success has a named response model (not a
bare object) and every error is a problem document. The fuzz test then lets
schemathesis generate requests for every operation from that schema (valid ones,
valid ones on real resources and with cursors shaped like the service's own, and
invalid ones) and sends them, as an admin who also holds every other role (so no
operation stops at the role check), to the app in process over the real service.
Each answer must be a declared status, with the declared content type and a body
that validates against the declared model, and never a 5xx. It is bounded (a
fixed number of examples per operation, derandomized) so it runs in well under a
minute and fails the same way every time. One test drives every operation through
``as_strategy`` because schemathesis's lazy pytest fixture loader does not run
under pytest 9.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import api_formats  # noqa: F401 (registers the schema's named formats)
from custody_env import ETH, CustodyEnv
from harbour.api.app import create_app
from harbour.api.roles import ROUTE_ROLES
from harbour.api.routing import PUBLIC_ROUTES

PROBLEM = "application/problem+json"
DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ERRORS = ("401", "403", "404", "409", "413", "422", "500", "503")
EXAMPLES = 12
"""Per operation (about 100 operations); about 25 s for all of them on a quiet machine."""


@dataclass
class Deployment:
    app: FastAPI
    token: str
    """A user's credential with every role, so that every operation gets past the role check."""
    ids: dict[str, str]
    """Real path parameters (a vault, a pending withdrawal, a spare user), so requests reach past the 404."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with CustodyEnv(tmp_path_factory.mktemp("api-schema")) as env:
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


@pytest.fixture(scope="module")
def openapi(deployment: Deployment) -> dict[str, Any]:
    return deployment.app.openapi()


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_every_route_is_in_the_schema(openapi: dict[str, Any]) -> None:
    assert {(method, path) for method, path, _ in _operations(openapi)} == set(ROUTE_ROLES) | PUBLIC_ROUTES


ALTERNATIVES = {
    ("GET", "/v1/events"): ("text/event-stream",),
    ("GET", "/v1/vaults/{vault_id}/statement"): ("text/csv",),
    ("GET", "/v1/vaults/{vault_id}/history"): ("text/csv",),
}


def test_every_success_is_a_named_model(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    for method, path, operation in _operations(openapi):
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert len(successes) == 1, (method, path)
        for response in successes.values():
            # JSON always; a route may also offer a stream or CSV (events, exports) by content negotiation
            assert "application/json" in response["content"], (method, path)
            assert set(response["content"]) <= {"application/json", *ALTERNATIVES.get((method, path), ())}, path
            ref = response["content"]["application/json"]["schema"]["$ref"]
            name = ref.removeprefix("#/components/schemas/")
            model = components[name]
            assert model.get("properties") or model.get("oneOf") or model.get("anyOf"), (method, path, name)
            assert model.get("additionalProperties", False) is False, (method, path, name)


def test_every_error_is_a_problem_document(openapi: dict[str, Any]) -> None:
    problem = openapi["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["required"])
    for method, path, operation in _operations(openapi):
        responses = operation["responses"]
        declared = {code for code in responses if not code.startswith("2")}
        assert {"413", "500"} <= declared, (method, path)
        if (method, path) not in PUBLIC_ROUTES:
            assert set(ERRORS) <= declared, (method, path)
        for code in declared:
            assert set(responses[code]["content"]) == {PROBLEM}, (method, path, code)
            assert responses[code]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_docs_name_the_route_modules() -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    assert "custody/shapes.py" in text and "api/routes/" in text


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _cursor(at: dt.datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


OFFSETS = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23), max_value=dt.timedelta(hours=23)))
TIMES = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.datetimes(max_value=dt.datetime(1, 1, 2), timezones=OFFSETS),
    st.datetimes(min_value=dt.datetime(9999, 12, 30), timezones=OFFSETS),
)
FORGED_CURSORS = st.builds(_cursor, TIMES, st.uuids().map(str))
"""Cursors shaped like the service's own (a time and a row id), which random text almost never is."""


def _cases(operation: Any, ids: dict[str, str]) -> st.SearchStrategy[Any]:
    """Valid requests, valid requests on real resources, and invalid requests (which must be refused well)."""
    names = {parameter.name for parameter in operation.path_parameters}
    real = {name: value for name, value in ids.items() if name in names}
    return st.one_of(
        operation.as_strategy(),
        operation.as_strategy(path_parameters=real),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )


def test_every_answer_keeps_to_the_schema(deployment: Deployment) -> None:
    headers = {"Authorization": f"Bearer {deployment.token}"}
    known = {"vault_id": deployment.ids["vault_id"], "to": DEST, "asset": "ETH"}
    failures: list[str] = []
    for result in schemathesis.openapi.from_asgi("/openapi.json", deployment.app).get_all_operations():
        assert not isinstance(result, Err), result.err()  # an operation the schema could not describe
        operation = result.ok()

        @given(case=_cases(operation, deployment.ids), real=st.booleans(), cursor=FORGED_CURSORS)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers(case: Any, real: bool, cursor: str) -> None:
            if real and isinstance(case.body, dict):  # a generated address rarely passes its checksum
                case.body.update({key: value for key, value in known.items() if key in case.body})
            paged = any(parameter.name == "cursor" for parameter in case.operation.query)
            if real and paged and case.path != "/v1/audit/events":  # its cursor is an event index
                case.query = {**(case.query or {}), "cursor": cursor}
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            answers()
        except Exception as exc:  # every operation is tried; all that fail are reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
