"""Whether a token withdrawal moved anything: judged by the token's Transfer events, never by the call's success.

EIP-20 lets ``transfer`` report failure by returning ``false`` instead of
reverting, and older tokens (USDT among them) return nothing at all. A receipt
with status 1 therefore says only that the call did not revert. What the token
itself says moved is its ``Transfer(from, to, value)`` event, so a token
withdrawal is confirmed only when its receipt carries, from the token's own
contract, Transfer events from the vault's source address to the destination;
their sum is what was delivered.

- **Nothing logged**: the token returned ``false`` (or did nothing) without
  reverting. The withdrawal fails (``token-no-transfer``), and since it was mined
  its nonce is spent and nothing is reserved for it any more.
- **Less than the amount logged**: a fee-on-transfer token took its cut on the
  way. The tokens left the vault and the transaction cannot be undone, so it is
  confirmed, with ``delivered`` recorded beside ``amount`` and the sub-status
  ``token-fee-deducted`` for whoever owes the recipient the difference.
- **The amount logged** (whatever ``transfer`` returned): confirmed.

A token whose events lie about its balances cannot be caught from a receipt;
docs/custody.md, "Token outcomes", says what an operator should check instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from harbour.chains.eip1559 import TRANSFER_TOPIC, parse_address
from harbour.chains.rpcvalues import Log, Receipt
from harbour.custody import models as m
from harbour.custody import outcomes
from harbour.custody.assets import AssetRef


@dataclass(frozen=True)
class Outcome:
    """What a mined token withdrawal did: ``delivered`` base units, and why it stopped or is marked (or None)."""

    delivered: int
    code: str | None
    text: str | None

    @property
    def failed(self) -> bool:
        return self.code == outcomes.TOKEN_NO_TRANSFER


def _word(address: str) -> bytes:
    return bytes(12) + parse_address(address)


def delivered(logs: tuple[Log, ...], token: str, sender: str, recipient: str) -> int:
    """Base units the Transfer events of ``token`` in ``logs`` say moved from ``sender`` to ``recipient``.

    Only events emitted by the token's own contract count (anyone can emit an
    event named Transfer), and only those with the EIP-20 shape: three topics and
    one 32-byte amount.
    """
    contract, source, destination = parse_address(token), _word(sender), _word(recipient)
    total = 0
    for entry in logs:
        if parse_address(entry.address) != contract or len(entry.topics) != 3 or len(entry.data) != 32:
            continue
        if entry.topics == (TRANSFER_TOPIC, source, destination):
            total += int.from_bytes(entry.data, "big")
    return total


def judge(receipt: Receipt, token: str, sender: str, recipient: str, amount: int) -> Outcome:
    """What a mined ``transfer`` of ``amount`` of ``token`` from ``sender`` to ``recipient`` did, by its events."""
    moved = delivered(receipt.logs, token, sender, recipient)
    if moved == 0:
        return Outcome(
            0,
            outcomes.TOKEN_NO_TRANSFER,
            f"the token reported no transfer: the call succeeded but {token} logged no Transfer of the amount "
            f"from {sender} to {recipient} (it returned false, or did nothing); nothing was paid",
        )
    if moved < amount:
        return Outcome(
            moved,
            outcomes.TOKEN_FEE_DEDUCTED,
            f"the token delivered {moved} of the {amount} sent: {token} takes a fee on transfer",
        )
    return Outcome(moved, None, None)


def of_withdrawal(s: Session, tx: m.Transaction, receipt: Receipt) -> Outcome | None:
    """The outcome of the mined withdrawal ``tx`` if it pays a token and did not revert; None otherwise."""
    if receipt.status != 1 or tx.asset_id is None or tx.source_address_id is None:
        return None
    asset, source = s.get(m.Asset, tx.asset_id), s.get(m.Address, tx.source_address_id)
    token = None if asset is None else AssetRef.of(asset).token
    if token is None or source is None or tx.destination is None or tx.amount is None:
        return None
    return judge(receipt, token, source.address, tx.destination, tx.amount)


def note(tx: m.Transaction, outcome: Outcome) -> None:
    """Record on ``tx`` what was delivered and, if anything is to be said, why."""
    tx.delivered = outcome.delivered
    if outcome.code is not None and outcome.text is not None:
        outcomes.record(tx, outcome.code, outcome.text)
