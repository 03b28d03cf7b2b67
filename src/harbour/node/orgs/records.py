"""One withdrawal a node accepted to sign, as velocity and count limits need it, and its one CBOR form.

A node records what the policy counts (the vault paid from, the asset's symbol,
the destination, the amount, the initiator) as it decided them from its own
governance state, the organisation's transaction id (so the same withdrawal
seen by several nodes counts once) and the time on its own clock. The same
form is kept in the node's store and carried in history statements
(:mod:`harbour.node.orgs.statement`), where it comes from another node: so it
is read strictly, every field bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from harbour.governance import fields as f
from harbour.governance.fields import GovernanceError
from harbour.governance.policy import MAX_AMOUNT, PastTx

MAX_TIME: Final = 2**40
"""Unix seconds far beyond any clock (year 36812), small enough for a datetime."""
_FIELDS: Final = 7


@dataclass(frozen=True)
class Record:
    transaction_id: str
    vault_id: str
    asset: str
    """The asset's symbol, as the policy names it."""
    destination: str
    amount: int
    initiator: str
    at: int
    """Unix seconds on the recording node's clock."""

    def __post_init__(self) -> None:
        f.text("transaction_id", self.transaction_id)
        f.text("vault_id", self.vault_id)
        f.text("asset", self.asset)
        f.address("destination", self.destination)
        f.uint("amount", self.amount, 0, MAX_AMOUNT)
        f.text("initiator", self.initiator)
        f.uint("at", self.at, 0, MAX_TIME)

    def to_cbor(self) -> list[Any]:
        return [
            self.transaction_id,
            self.vault_id,
            self.asset,
            self.destination,
            str(self.amount),
            self.initiator,
            self.at,
        ]

    @classmethod
    def from_cbor(cls, obj: object) -> Record:
        """Strictly: a list of exactly the seven fields, the amount as a canonical decimal string."""
        if not isinstance(obj, list) or len(obj) != _FIELDS:
            raise GovernanceError("malformed", f"a withdrawal record is a list of {_FIELDS} fields")
        amount = obj[4]
        if not isinstance(amount, str) or not (amount.isascii() and amount.isdigit()) or len(amount) > 78:
            raise GovernanceError("malformed", f"a record's amount is a decimal string, got {amount!r:.80}")
        if amount != str(int(amount)):
            raise GovernanceError("malformed", f"a record's amount has leading zeros: {amount!r:.80}")
        return cls(obj[0], obj[1], obj[2], obj[3], int(amount), obj[5], obj[6])

    def past(self, now: int) -> PastTx:
        """The record as the policy engine counts it, judged at ``now``.

        A time ahead of ``now`` (another node's clock running fast) is taken as
        ``now``: the engine counts only the past, and a record from the future
        must not escape the window.
        """
        return PastTx(
            initiator_id=self.initiator,
            vault_id=self.vault_id,
            asset=self.asset,
            destination=self.destination,
            amount=self.amount,
            at=datetime.fromtimestamp(min(self.at, now), UTC),
        )


def union(records: list[Record], current: str) -> list[Record]:
    """The records of several nodes as one history: each transaction id once, ``current`` left out.

    The same withdrawal recorded by two nodes may differ in time (their clocks) or,
    from a node that lies, in amount; the larger amount and the later time are
    kept, so what is counted never falls below what any node recorded.
    """
    merged: dict[str, Record] = {}
    for record in records:
        if record.transaction_id == current:
            continue
        seen = merged.get(record.transaction_id)
        if seen is not None:
            record = replace(seen, amount=max(record.amount, seen.amount), at=max(record.at, seen.at))
        merged[record.transaction_id] = record
    return list(merged.values())
