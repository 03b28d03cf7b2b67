"""One transaction per nonce, unless the approvers signed a replacement: what a node remembers of each nonce it signed.

A nonce of an account is mined once. Signing two transactions at one nonce is
therefore harmless for the payment (only one is mined), but it is how a stuck
transaction is replaced, and the replacement decides what is paid: a service
that could have a second, different transaction signed at an approved one's
nonce could swap the payment after the approvals. So a node keeps, per
organisation and account, the transaction ids it signed at each nonce, and signs
another transaction id at a nonce it already signed only if that transaction's
intent names one of them as the one it ``replaces``, which its approvers signed
(:class:`harbour.node.quorum.Intent`). A transaction id signed again at its own
nonce (a retry, the same approvals) is not a second transaction.

The record is kept, as the pins are, in the signing log's ``started`` entry of
each session (:func:`harbour.node.orgs.history.log_reason` carries the sender
and the nonce), so a node rebuilds it when it starts.
"""

from __future__ import annotations

from harbour.node.certificate import ApprovalError

Slot = tuple[str, str, int]
"""``(organisation, sender address, nonce)``."""


class NonceBook:
    """The transaction ids each nonce was signed for, per organisation and sender account."""

    def __init__(self) -> None:
        self._signed: dict[Slot, set[str]] = {}

    def check(self, org: str, sender: str, nonce: int, transaction_id: str, replaces: str | None) -> None:
        """ApprovalError("reused") unless ``transaction_id`` may be signed at ``nonce`` of ``sender``."""
        others = self._signed.get((org, sender, nonce), set()) - {transaction_id}
        if not others or replaces in others:
            return
        named = ", ".join(sorted(others))
        how = f"it names {replaces!r} as the one it replaces" if replaces else "it names none it replaces"
        raise ApprovalError(
            "reused",
            f"nonce {nonce} of {sender} was signed for transaction {named}; another transaction at that nonce is "
            f"signed only as an approved replacement of it, and {how}",
        )

    def add(self, org: str, sender: str, nonce: int, transaction_id: str) -> None:
        self._signed.setdefault((org, sender, nonce), set()).add(transaction_id)

    def signed(self, org: str, sender: str, nonce: int) -> frozenset[str]:
        return frozenset(self._signed.get((org, sender, nonce), set()))
