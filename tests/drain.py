"""The single-admin drain, step by step, as the one admin who attempts it can act through the service.

The attack the admin quorum exists for: with one admin's API token and approval
key, create a second admin whose key she also holds, propose an allow-everything
policy and approve it as that admin, create an initiator of her own and
withdraw everything. :func:`one_admin_drain` performs every step against a
:class:`custody_env.CustodyEnv` and asserts, at each, that the service refuses
it: nothing she proposes lands, since every entry needs another admin. It
returns what she made, so a test can carry the attack further (to the signer
nodes, with entries signed by her and her sock puppet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody_env import ETH, CustodyEnv, public_hex
from harbour.custody import statements
from harbour.custody.errors import Forbidden, Invalid, NotFound
from harbour.custody.views import Page

DEST = "0x2222222222222222222222222222222222222222"


@dataclass
class Drain:
    """What the attacker made: her proposals (still pending), her sock puppet's key, her withdrawal."""

    puppet: dict[str, Any]
    lenient: dict[str, Any]
    ghost: dict[str, Any]
    sock: Ed25519PrivateKey
    withdrawal: dict[str, Any]


def one_admin_drain(env: CustodyEnv, vault_id: str, amount: int = 4 * ETH) -> Drain:
    """Alice's token and key alone: every step of the drain stays a proposal nobody else signed."""
    alice = env.actor("admin")
    before = env.custody.governance_head(env.actor("viewer"))["seq"]
    sock = Ed25519PrivateKey.generate()

    # 1. A second admin whose key alice holds: proposed, and not in force.
    puppet = env.custody.create_user(alice, name="sock-puppet", roles=["admin"], approval_key=public_hex(sock))
    # The puppet's signature, handed in by the only credential she has, is not hers: refused.
    request = env.custody.approval_request(alice, puppet["id"])
    subject = statements.from_request(request, puppet["id"])
    forged = subject.sign(sock, subject.statement()).hex()
    with pytest.raises(Invalid, match="does not verify"):
        env.custody.approve(alice, puppet["id"], signature=forged)
    assert env.approve(puppet["id"], "admin")["state"] == "pending_approval"  # her own: one of two
    with pytest.raises(NotFound):  # no such user yet: no credential for it, so nobody can sign as it
        env.custody.issue_credential(alice, puppet["changes"][0]["id"])

    # 2. The allow-everything policy: proposed, signed by alice, not in force.
    lenient = env.custody.propose_policy(alice, {"rules": [{"name": "anything goes", "action": "allow"}]})
    assert env.approve(lenient["id"], "admin")["state"] == "pending_approval"
    assert env.custody.get_policy(env.actor("viewer"))["document"]["rules"][0]["name"] == "treasury approval"

    # 3. An initiator of her own: proposed, not created.
    ghost = env.custody.create_user(alice, name="ghost", roles=["initiator"])
    assert env.approve(ghost["id"], "admin")["state"] == "pending_approval"
    with pytest.raises(NotFound):
        env.custody.issue_credential(alice, ghost["changes"][0]["id"])

    # 4. A credential of the real initiator's (an admin may issue one at once) only submits what the policy allows.
    token = env.custody.issue_credential(alice, env.user_id("initiator"))["token"]
    stolen = env.custody.authenticate(token)
    withdrawal = env.custody.submit_withdrawal(stolen, vault_id=vault_id, asset="ETH", to=DEST, amount=amount)
    assert withdrawal["state"] == "pending_approval"  # two approvers must still sign
    with pytest.raises(Forbidden):
        env.custody.approve(alice, withdrawal["id"], signature="00" * 64)

    assert env.custody.governance_head(env.actor("viewer"))["seq"] == before  # not one entry landed
    names = {u["name"] for u in env.custody.list_users(alice, Page(limit=200))["items"]}
    assert not {"sock-puppet", "ghost"} & names
    return Drain(puppet, lenient, ghost, sock, withdrawal)
