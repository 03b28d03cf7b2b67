"""A withdrawal request signed by its initiator: who asked is then the initiator's word, not the service's.

Rules may depend on who asks for a withdrawal: a rule that allows a treasury
bot's payments without approval, a limit per initiator, a block on an intern's
large payments. Without the initiator's own signature the initiator would be
whatever the service names, and a compromised service could name the bot. So
when the policy in force names initiators or roles, or limits per initiator
(:meth:`harbour.governance.policy.Policy.depends_on_initiator`), every
withdrawal must carry its initiator's signature, with their current approval
key (Ed25519, RFC 8032), over :data:`DOMAIN` and the canonical CBOR body::

    {"version": 1, "type": "harbour-withdrawal-request", "org": <32-byte genesis hash>,
     "chain_id": <EIP-155 chain id>, "transaction_id": <text>, "vault": <vault id>,
     "asset": <symbol>, "destination": <0x address, lowercase>, "amount": <int, base units>}

The initiator chooses the transaction id (a fresh UUID) and signs before the
request is sent, so the statement needs nothing the service decides. Everything
in it is something the policy reads; the service and every signer node rebuild
it from the quorum-signed state (which vault a key is, which symbol a token
contract is) and the transaction they are asked about, and verify it with the
initiator's key as the state holds it (:func:`harbour.governance.decide.judge`).
A signer node signs one transaction per transaction id, so a signed request is
paid at most once.
"""

from __future__ import annotations

from typing import Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.governance import fields as f

DOMAIN: Final = b"harbour/withdrawal-request/v1\x00"
"""Prefix of what an initiator signs: the signature verifies as nothing else (no approval, no entry)."""
TYPE: Final = "harbour-withdrawal-request"
VERSION: Final = 1


def request_body(
    *, org: bytes, chain_id: int, transaction_id: str, vault: str, asset: str, destination: str, amount: int
) -> bytes:
    """The canonical bytes an initiator signs for this withdrawal (``org`` is the genesis hash)."""
    f.digest("org", org)
    f.uint("chain id", chain_id, 1, 2**64 - 1)
    f.text("transaction id", transaction_id)
    f.text("vault id", vault)
    f.text("asset", asset, 16)
    f.address("destination", destination)
    if type(amount) is not int or amount <= 0:
        raise ValueError("amount must be a positive integer of base units")
    return bytes(
        cbor2.dumps(
            {
                "version": VERSION,
                "type": TYPE,
                "org": org,
                "chain_id": chain_id,
                "transaction_id": transaction_id,
                "vault": vault,
                "asset": asset,
                "destination": f.address_key(destination),
                "amount": amount,
            },
            canonical=True,
        )
    )


def sign_request(private_key: Ed25519PrivateKey, body: bytes) -> bytes:
    """The initiator's signature over :func:`request_body`'s bytes (64 bytes)."""
    return private_key.sign(DOMAIN + body)


def verify_request(public_key: bytes, signature: bytes, body: bytes) -> bool:
    if not f.acceptable_key(public_key) or type(signature) is not bytes or len(signature) != f.SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, DOMAIN + body)
    except (InvalidSignature, ValueError):
        return False
    return True
