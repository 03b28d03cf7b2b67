"""What ``harbour approve`` checks of a governance change before an admin signs it.

An admin signs a governance entry's bytes, and those bytes, with the other
admins' signatures, are the change: whatever the server shows beside them is
only its word. So everything shown here comes from decoding the very bytes that
will be signed (:class:`harbour.custody.statements.GovernanceApproval`, strict
canonical CBOR), and the server's own description of them, in the approval
request and in the transaction, must match that decoding line for line; the
entry must be the transaction's, in its place in the log. Anything else is
refused before a key is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harbour.cli.apiclient import ApiError

if TYPE_CHECKING:  # imported when an entry is checked: the CLI starts without them
    from harbour.custody.statements import GovernanceApproval


class EntryMismatch(ApiError):
    """A governance change whose bytes do not say what the server says they say."""


def check_governance_request(request: dict[str, Any], tx: dict[str, Any], tx_id: str) -> tuple[GovernanceApproval, str]:
    """The subject to sign for a governance change's approval request, and the summary to show.

    Everything shown comes from decoding the very bytes that will be signed; the
    server's own description of them (in the request and in the transaction)
    must match it line for line, and the entry must be the transaction's.
    """
    from harbour.custody import statements
    from harbour.governance.fields import GovernanceError

    def expect(condition: bool, what: str) -> None:
        if not condition:
            raise EntryMismatch(f"refusing to sign: {what}")

    try:
        data = bytes.fromhex(str(request.get("entry")))
        subject = statements.GovernanceApproval(org=str(request.get("org")), transaction_id=tx_id, data=data)
    except (ValueError, GovernanceError) as exc:
        raise EntryMismatch(f"refusing to sign: the entry's bytes are no governance entry: {exc}") from None
    entry, lines = subject.entry, subject.changes()
    expect(entry.org == request.get("org"), "the entry is for another organisation than the request's")
    expect(tx.get("entry") == data.hex(), "the entry is not the transaction's")
    expect((entry.seq, entry.prev.hex()) == (tx.get("seq"), tx.get("prev")), "the entry's place in the log differs")
    expect(request.get("changes") == lines, "the server's description of the changes is not what the bytes say")
    described = [c.get("description") for c in tx.get("changes") or [] if isinstance(c, dict)]
    expect(described == lines, "the transaction's changes are not what the entry's bytes say")
    summary = "\n".join(
        [
            f"governance entry {entry.seq} ({tx_id}), proposed by {entry.proposer}",
            f"  after:   {entry.prev.hex()}",
            *(f"  change:  {line}" for line in lines),
        ]
    )
    return subject, summary
