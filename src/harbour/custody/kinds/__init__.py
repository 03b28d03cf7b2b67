"""Transaction kinds: what a vault key can be asked to sign, one module per kind.

A kind says, for one transaction it is given as an :class:`Order`, everything
that differs between kinds of transaction:

- the **intent** the approvers sign and every signer node re-derives from the
  bytes it is asked to sign (no blind signing);
- the **body** of the unsigned EIP-1559 transaction (recipient, value, calldata,
  gas limit), to which the pipeline adds the chain, the nonce and the fees;
- the **needs**: what it takes from its source address besides fees, and the gas
  to reserve for it before it is built.

The withdrawal code and the pipeline look a kind up by the transaction's stored
``kind`` (:func:`of`) and call it; they never branch on the asset or on the kind.
A new kind (a contract call, a token issuance, a settlement leg) is a new module
here and a line in :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from harbour.custody.errors import Conflict
from harbour.custody.kinds.base import Body, Order, TransactionKind
from harbour.custody.kinds.transfer import TRANSFER

REGISTRY: Final[Mapping[str, TransactionKind]] = {k.name: k for k in (TRANSFER,)}


def of(name: str) -> TransactionKind:
    """The kind of a transaction whose row says ``kind = name``; Conflict if a vault signs no such transaction."""
    kind = REGISTRY.get(name)
    if kind is None:
        raise Conflict(f"a {name.replace('_', ' ')} is not a transaction a vault signs")
    return kind


__all__ = ["REGISTRY", "Body", "Order", "TransactionKind", "of"]
