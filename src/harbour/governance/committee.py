"""A vault's key moved to another committee of signer nodes: ``vault.reshare``.

A ``vault.add`` names the nodes that hold a vault's key and the threshold they
sign at, each holder stating it signed (:mod:`harbour.governance.holding`). A
reshare on the signer nodes (``harbour vault reshare``) hands the same key (the
same public key and chain code, so the same addresses) to another committee,
for example to bring in a fourth node or to retire one. The log then has to say
so: the admins approve who holds the organisation's key, a node signs for a
vault only as one of the holders the log states, and an auditor reads the
committee from the log rather than from the service. ``vault.reshare`` is that
record. It carries the new committee and threshold with every new holder's
signed statement, and applies (:func:`check`) only if

- it keeps the key: the same organisation, key id, public key and chain code;
- it changes something: another committee or another threshold;
- the threshold never goes below the one in force (the nodes refuse such a
  reshare too) and stays above half the committee (``2t > n``: any two signer
  sets share a node, so velocity limits and one payment per request hold);
- every new holder is one of the organisation's nodes (``node.add``) and stated
  exactly this holding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harbour.governance import fields as f
from harbour.governance import holding
from harbour.governance.fields import GovernanceError
from harbour.governance.holding import MAX_HOLDERS, Holding

Exact = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ReshareVault:
    """Vault ``id``'s key is held from now on by :attr:`holding`'s holders, at its threshold."""

    id: str
    holding: Holding
    statements: tuple[bytes, ...]
    op: ClassVar[str] = "vault.reshare"

    @property
    def key_id(self) -> str:
        return self.holding.key_id

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, **self.holding.fields(), "statements": list(self.statements)}


def decode(exact: Exact) -> ReshareVault:
    """A ``vault.reshare`` from its exact-keys reader; GovernanceError("malformed") for anything else."""
    v = exact("id", "org", "key_id", "public_key", "chain_code", "threshold", "holders", "statements")
    holders, statements = v["holders"], v["statements"]
    if not isinstance(holders, list) or not isinstance(statements, list) or len(statements) > MAX_HOLDERS:
        raise GovernanceError("malformed", f"holders and statements are lists (at most {MAX_HOLDERS})")
    if not all(type(s) is bytes for s in statements):
        raise GovernanceError("malformed", "a holding statement is bytes")
    return ReshareVault(
        f.text("vault id", v["id"]),
        Holding(v["org"], v["key_id"], v["public_key"], v["chain_code"], v["threshold"], tuple(holders)),
        tuple(statements),
    )


def check(current: Holding, change: ReshareVault, nodes: Mapping[bytes, str]) -> None:
    """GovernanceError("change") unless ``change`` may replace ``current`` (see the module's list)."""
    new = change.holding
    kept = (new.org, new.key_id, new.public_key, new.chain_code)
    if kept != (current.org, current.key_id, current.public_key, current.chain_code):
        raise GovernanceError(
            "change",
            f"a reshare keeps the vault's key: {new.key_id!r} with public key {new.public_key.hex()[:16]}... is "
            f"not vault {change.id!r}'s key {current.key_id!r}",
        )
    if (new.holders, new.threshold) == (current.holders, current.threshold):
        raise GovernanceError("change", f"vault {change.id!r} is held by this committee at this threshold already")
    if new.threshold < current.threshold:
        raise GovernanceError(
            "change", f"the threshold never goes below the {current.threshold} in force, not {new.threshold}"
        )
    if 2 * new.threshold <= len(new.holders):
        raise GovernanceError(
            "change",
            f"{new.threshold} of {len(new.holders)} lets two signer sets share no node: the threshold must be above "
            f"half the committee ({len(new.holders) // 2 + 1} or more)",
        )
    holding.check(change.statements, new, nodes)


def describe(change: ReshareVault) -> str:
    """One line an admin reads before signing: the whole new committee, by identity key, and the threshold."""
    h = change.holding
    holders = ", ".join(k.hex() for k in h.holders)
    return (
        f"vault {change.id}'s key {h.key_id} (public key {h.public_key.hex()}, unchanged) is now held by "
        f"{len(h.holders)} node(s) with identity keys {holders}; {h.threshold} of them sign, each stating it holds "
        "it for this organisation"
    )
