"""A node's status, signed by its identity key: what an operator or a custody service asks before trusting it.

``harbour node status`` and ``harbour custody add-node`` ask a node how it is
configured and what it holds: the keys, the sessions running, the certificate
nonces spent, the organisations enrolled and its approval settings. The custody
service refuses a node that would sign on the service's word alone, so the
answer decides something, and it travels over plain HTTP through whatever sits
between the two. So the node signs it with its identity key (the one its
descriptor names, which the asker already holds) over a domain tag and the
canonical CBOR body, and the body carries the asker's fresh random
**challenge**: an answer recorded earlier (before an operator turned a setting
off) cannot be played back, and a relay cannot write one.

Request ``{"op": "status", "challenge": <16..64 bytes>}``; answer ``{"status":
<body>, "signature": <64 bytes>}``, the body the canonical CBOR map::

    {"version": 1, "type": "harbour-node-status", "node": <node id>, "challenge": <bytes>,
     "time": <node's clock, seconds>, "software": <Harbour version>, "offline": bool,
     "keys": [<key id>, ...], "sessions": int, "ledger": int,
     "organisations": [{"org": <hex>, "seq": int}, ...],
     "settings": {"organisations_only": bool, "approvers": int, "min_approvals": int,
                  "require_evidence": bool, "authorities": [<authority id>, ...]}}

The signature says only that the node holding that identity key answered; what
it says about itself is its operator's word (a changed node can lie), which is
why the custody service's real protection is the node's own refusal, not this
check of its settings.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.node.config import signs_on_authority_alone
from harbour.node.identity import NodeDescriptor
from harbour.util import cbor

DOMAIN: Final = b"harbour/node-status/v1\x00"
TYPE: Final = "harbour-node-status"
VERSION: Final = 1
MIN_CHALLENGE: Final = 16
MAX_CHALLENGE: Final = 64
SIGNATURE_LEN: Final = 64
_BODY_KEYS: Final = frozenset(
    {
        "version",
        "type",
        "node",
        "challenge",
        "time",
        "software",
        "offline",
        "keys",
        "sessions",
        "ledger",
        "organisations",
        "settings",
    }
)
_SETTINGS: Final[Mapping[str, type]] = {
    "organisations_only": bool,
    "approvers": int,
    "min_approvals": int,
    "require_evidence": bool,
    "authorities": list,
}


class StatusError(ValueError):
    """A status answer that is malformed, for another challenge or node, or not signed by the node's key."""


@dataclass(frozen=True)
class Settings:
    """The node's approval settings (``node.json``), as it states them."""

    organisations_only: bool
    approvers: int
    """How many approvers' keys the node trusts (0: none configured)."""
    min_approvals: int
    require_evidence: bool
    authorities: tuple[str, ...]
    """The ids of the approval authorities it obeys (SHA-256 of each key's SubjectPublicKeyInfo, hex)."""

    @property
    def signs_on_authority_alone(self) -> bool:
        return signs_on_authority_alone(
            organisations_only=self.organisations_only,
            approvers=self.approvers,
            require_evidence=self.require_evidence,
            min_approvals=self.min_approvals,
        )

    def document(self) -> dict[str, Any]:
        return {
            "organisations_only": self.organisations_only,
            "approvers": self.approvers,
            "min_approvals": self.min_approvals,
            "require_evidence": self.require_evidence,
            "authorities": list(self.authorities),
        }


@dataclass(frozen=True)
class NodeStatus:
    node: str
    challenge: bytes
    time: int
    software: str
    offline: bool
    keys: tuple[str, ...]
    sessions: int
    ledger: int
    organisations: tuple[tuple[str, int], ...]
    """(genesis hash in hex, sequence number of the node's head) per enrolled organisation."""
    settings: Settings

    def body(self) -> bytes:
        return bytes(
            cbor2.dumps(
                {
                    "version": VERSION,
                    "type": TYPE,
                    "node": self.node,
                    "challenge": self.challenge,
                    "time": self.time,
                    "software": self.software,
                    "offline": self.offline,
                    "keys": list(self.keys),
                    "sessions": self.sessions,
                    "ledger": self.ledger,
                    "organisations": [{"org": org, "seq": seq} for org, seq in self.organisations],
                    "settings": self.settings.document(),
                },
                canonical=True,
            )
        )


def new_challenge() -> bytes:
    return secrets.token_bytes(32)


def check_challenge(challenge: bytes) -> bytes:
    if type(challenge) is not bytes or not MIN_CHALLENGE <= len(challenge) <= MAX_CHALLENGE:
        raise StatusError(f"a status challenge is {MIN_CHALLENGE}..{MAX_CHALLENGE} random bytes")
    return challenge


def answer(status: NodeStatus, sign: Callable[[bytes], bytes]) -> dict[str, bytes]:
    """The ``status`` response's fields: the body and ``sign(DOMAIN + body)`` (the node's identity key)."""
    body = status.body()
    return {"status": body, "signature": sign(DOMAIN + body)}


def verified(response: Mapping[str, Any], descriptor: NodeDescriptor, challenge: bytes) -> NodeStatus:
    """The status in a node's ``status`` response, once it is shown to be this node's answer to this challenge."""
    body, signature = response.get("status"), response.get("signature")
    if type(body) is not bytes or type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        raise StatusError(f"node {descriptor.name} answered no signed status")
    try:
        Ed25519PublicKey.from_public_bytes(descriptor.sign_pk).verify(signature, DOMAIN + body)
    except InvalidSignature:
        raise StatusError(
            f"the status answer is not signed by node {descriptor.name}'s identity key ({descriptor.node_id}): "
            "something between here and the node answered in its name"
        ) from None
    status = parse(body)
    if status.node != descriptor.node_id:
        raise StatusError(f"the status answer is node {status.node}'s, not {descriptor.name}'s")
    if status.challenge != challenge:
        raise StatusError(f"node {descriptor.name}'s status answers another challenge (an old answer played back)")
    return status


def parse(body: bytes) -> NodeStatus:
    """A status body, parsed strictly (exact fields and types, one canonical encoding)."""
    try:
        decoded = cbor.decode(body)
    except cbor.InvalidCbor as exc:
        raise StatusError("the status is not valid CBOR") from exc
    obj = decoded.value
    if type(obj) is not dict or not decoded.canonical or set(obj) != _BODY_KEYS:
        raise StatusError(f"the status must be one canonical CBOR map of {sorted(_BODY_KEYS)}")
    if obj["version"] != VERSION or obj["type"] != TYPE:
        raise StatusError(f"not a version-{VERSION} {TYPE} statement")
    expected = {
        "node": str,
        "challenge": bytes,
        "time": int,
        "software": str,
        "offline": bool,
        "keys": list,
        "sessions": int,
        "ledger": int,
        "organisations": list,
        "settings": dict,
    }
    for name, kind in expected.items():
        if type(obj[name]) is not kind:
            raise StatusError(f"the status's {name} must be {kind.__name__}")
    if not all(type(k) is str for k in obj["keys"]):
        raise StatusError("the status's keys must be key ids")
    organisations = []
    for entry in obj["organisations"]:
        if type(entry) is not dict or set(entry) != {"org", "seq"}:
            raise StatusError("each of the status's organisations is {org, seq}")
        if type(entry["org"]) is not str or type(entry["seq"]) is not int:
            raise StatusError("an organisation is its genesis hash (hex) and the sequence number of its head")
        organisations.append((entry["org"], entry["seq"]))
    settings = obj["settings"]
    if set(settings) != set(_SETTINGS) or any(type(settings[k]) is not t for k, t in _SETTINGS.items()):
        raise StatusError(f"the status's settings must be exactly {sorted(_SETTINGS)}, of their types")
    if not all(type(a) is str for a in settings["authorities"]):
        raise StatusError("the status's authorities must be authority ids")
    return NodeStatus(
        node=obj["node"],
        challenge=obj["challenge"],
        time=obj["time"],
        software=obj["software"],
        offline=obj["offline"],
        keys=tuple(obj["keys"]),
        sessions=obj["sessions"],
        ledger=obj["ledger"],
        organisations=tuple(organisations),
        settings=Settings(
            organisations_only=settings["organisations_only"],
            approvers=settings["approvers"],
            min_approvals=settings["min_approvals"],
            require_evidence=settings["require_evidence"],
            authorities=tuple(settings["authorities"]),
        ),
    )
