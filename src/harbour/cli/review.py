"""What ``harbour approve`` checks of a governance change before an admin signs it.

An admin signs a governance entry's bytes, and those bytes, with the other
admins' signatures, are the change: whatever the server shows beside them is
only its word. So everything shown here comes from decoding the very bytes that
will be signed (:class:`harbour.custody.statements.GovernanceApproval`, strict
canonical CBOR), and the server's own description of them, in the approval
request and in the transaction, must match that decoding line for line; the
entry must be the transaction's, in its place in the log. Anything else is
refused before a key is touched.

Which organisation's log the entry extends is not the server's word either.
Before an approval is signed, :func:`check_place_in_log` fetches the whole log,
replays it with :class:`harbour.governance.state.GovernanceLog` from the genesis
this CLI pinned for the organisation (:mod:`harbour.cli.trusted_orgs`), and
requires the entry to be the next one on the verified head and its changes to
apply to the verified state (the service's own dry run of a proposal). A policy
change is shown rule by rule against the verified policy in force
(:mod:`harbour.cli.policyview`). So an
entry of a second organisation enrolled under the same id, with the same admin
keys and a different genesis, is refused, and so is one on a head the server
made up or on a log it tampered with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from harbour.cli.apiclient import MAX_LIMIT, ApiError, Client

if TYPE_CHECKING:  # imported when an entry is checked: the CLI starts without them
    from harbour.custody.statements import GovernanceApproval
    from harbour.governance import changes
    from harbour.governance.log import SignedEntry
    from harbour.governance.state import GovernanceLog, OrgState


class EntryMismatch(ApiError):
    """A governance change whose bytes do not say what the server says they say."""


def check_governance_request(request: dict[str, Any], tx: dict[str, Any], tx_id: str) -> tuple[GovernanceApproval, str]:
    """The subject to sign for a governance change's approval request, and the summary to show.

    Everything shown comes from decoding the very bytes that will be signed; the
    server's own description of them (in the request and in the transaction)
    must match it line for line, and the entry must be the transaction's.
    """
    from harbour.custody import statements
    from harbour.governance.changes import AddVault
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
            *(_vault_address(change) for change in entry.changes if isinstance(change, AddVault)),
        ]
    )
    return subject, summary


def _vault_address(change: changes.AddVault) -> str:
    """The first address of the vault a ``vault.add`` binds, derived here from its key (BIP-32 ``m/0``).

    The address the service will show for deposits into the vault; an admin can
    compare it with the one clients are given, and the key it derives from is the
    one every holder stated it holds for this organisation.
    """
    from harbour.chains.ethereum import address_from_public_key
    from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
    from harbour.mpc import hd

    try:
        point = SECP256K1.decode_point(change.holding.public_key)
        child = hd.derive(SECP256K1, point, change.holding.chain_code, "m/0").public_key
    except ValueError as exc:  # not a point of the curve: no key, so no vault the nodes could sign for
        raise EntryMismatch(f"refusing to sign: vault {change.name!r} names no secp256k1 public key: {exc}") from None
    assert isinstance(child, Secp256k1Point)
    return f"  vault:   {change.name!r} pays out of and takes deposits at {address_from_public_key(child)} (m/0) first"


def verified_log(client: Client, org: str, refusing: str = "refusing to sign") -> tuple[GovernanceLog, bytes | None]:
    """The server's log of ``org``, replayed from the genesis this CLI pinned for it, and that pin (None: none yet).

    EntryMismatch if the log starts from another genesis than the pinned one, is
    another organisation's, or does not verify.
    """
    from harbour.cli import trusted_orgs
    from harbour.governance.fields import GovernanceError
    from harbour.governance.state import GovernanceLog

    trusted = trusted_orgs.pinned(client.api, org)
    log: GovernanceLog | None = None
    for signed in _served_log(client, refusing):
        try:
            if log is None:
                if trusted is not None and signed.hash != trusted:
                    raise EntryMismatch(
                        f"{refusing}: the server's governance log starts from genesis {signed.hash.hex()}, "
                        f"but the genesis trusted for organisation {org} at {client.api} is {trusted.hex()} "
                        f"({trusted_orgs.trust_file()}): it is another organisation's log"
                    )
                log = GovernanceLog(signed)
                if log.state.org != org:
                    raise EntryMismatch(
                        f"{refusing}: the server's governance log is organisation {log.state.org!r}'s, not {org!r}'s"
                    )
            else:
                log.append(signed)
        except GovernanceError as exc:
            at = "its genesis" if log is None else f"entry {signed.entry.seq}"
            raise EntryMismatch(
                f"{refusing}: the server's governance log does not verify at {at} ({exc.reason}): {exc}"
            ) from None
    if log is None:
        raise EntryMismatch(f"{refusing}: the server serves no governance log to check against")
    before = trusted_orgs.seen(client.api, org) if trusted is not None else None
    if before is not None:
        seq, head = before
        if seq > log.state.seq or log.hashes[seq] != head:
            raise EntryMismatch(
                f"{refusing}: the server's governance log (to entry {log.state.seq}) does not extend entry {seq} "
                f"({head.hex()[:16]}) this CLI verified before: it withholds or rewrote entries"
            )
    trusted_orgs.see(client.api, org, log.state.seq, log.head)
    return log, trusted


def pin_first_use(client: Client, org: str, log: GovernanceLog) -> None:
    """Pin ``log``'s genesis for ``org`` at this server, saying so on stderr (nothing was pinned before)."""
    from harbour.cli import trusted_orgs

    trusted_orgs.pin(client.api, org, log.genesis_hash)
    typer.echo(
        f"pinned organisation {org}'s genesis {log.genesis_hash.hex()} for {client.api} in "
        f"{trusted_orgs.trust_file()} (first use): compare it with the genesis `harbour custody bootstrap` "
        f"printed; if they differ, pin the right one with `harbour governance trust` and sign nothing until then",
        err=True,
    )


def check_place_in_log(client: Client, subject: GovernanceApproval) -> str:
    """Replay the organisation's log from its pinned genesis; the entry must be its next and must apply.

    Nothing pinned for the organisation at this server: the genesis it serves
    is pinned once everything else checks out, and a line on stderr asks the
    admin to compare it with the one ``harbour custody bootstrap`` printed.
    Returns the line to show with the entry.
    """
    from harbour.governance.fields import GovernanceError
    from harbour.governance.log import SignedEntry

    entry, org = subject.entry, subject.org
    log, trusted = verified_log(client, org)
    state = log.state
    if (entry.seq, entry.prev) != (state.seq + 1, log.head):
        raise EntryMismatch(
            f"refusing to sign: the entry is entry {entry.seq} after {entry.prev.hex()}, but the next entry of the "
            f"verified log is entry {state.seq + 1} after {log.head.hex()}"
        )
    proposer = state.users.get(entry.proposer)
    if proposer is None or not proposer.active_admin:
        raise EntryMismatch(f"refusing to sign: the proposer {entry.proposer!r} is not an enabled admin with a key")
    try:
        state.apply(SignedEntry(subject.data, ()))  # the service's dry run of a proposal: signatures come later
    except GovernanceError as exc:
        raise EntryMismatch(
            f"refusing to sign: the entry's changes do not apply to the verified state (entry {state.seq}): {exc}"
        ) from None
    if trusted is None:
        pin_first_use(client, org, log)
    from harbour.cli.policyview import review
    from harbour.governance.changes import SetPolicy

    return "\n".join(
        [
            f"  log:     entry {state.seq} ({log.head.hex()}), verified from genesis {log.genesis_hash.hex()}",
            *(line for change in entry.changes if (line := _target(state, change))),
            *(line for ch in entry.changes if isinstance(ch, SetPolicy) for line in review(ch.policy(), state)),
        ]
    )


def _target(state: OrgState, change: changes.Change) -> str | None:
    """What a change that names something by id names, as the verified state knows it (None: it names nothing).

    The changes say ``vault 0f3c...``; an admin signs knowing it is ``'treasury'``. Something the same
    entry creates is not in the state before it, and gets no line (the line that creates it names it).
    """
    from harbour.governance import amendments as am
    from harbour.governance import changes as c
    from harbour.governance import committee

    if isinstance(change, c.SetRoles | c.SetKey | c.DisableUser | c.EnableUser):
        user = state.users.get(change.id)
        if user is None:
            return None
        disabled = ", disabled" if user.disabled else ""
        return f"  target:  user {change.id} is {user.name!r} ({', '.join(sorted(user.roles))}{disabled})"
    if isinstance(change, am.RenameVault | am.ArchiveVault):
        vault = state.vaults.get(change.id)
        return None if vault is None else f"  target:  vault {change.id} is {vault.name!r} (key {vault.key_id})"
    if isinstance(change, committee.ReshareVault):
        vault = state.vaults.get(change.id)
        if vault is None:
            return None
        now, then = vault.holding, change.holding
        return (
            f"  target:  vault {change.id} is {vault.name!r}: held by {_nodes(state, now.holders)}, {now.threshold} "
            f"signing; then by {_nodes(state, then.holders)}, {then.threshold} signing"
        )
    if isinstance(change, am.DisableAsset | am.EnableAsset):
        asset = state.assets.get(change.id)
        what = None if asset is None else f"{asset.symbol} ({asset.contract or 'the native coin'})"
        return None if what is None else f"  target:  asset {change.id} is {what}"
    if isinstance(change, am.RenameAddress | c.SetWhitelisted | c.RemoveAddress):
        entry = state.address_book.get(change.id)
        what = None if entry is None else f"{entry.name!r} ({entry.address})"
        return None if what is None else f"  target:  address-book entry {change.id} is {what}"
    return None


def _nodes(state: OrgState, keys: tuple[bytes, ...]) -> str:
    """Each node as the verified log names it, quoted, and the first hex digits of its identity key beside it.

    A node's name is free text: ``'n2, n3'`` must not read as two nodes, nor a name as a key the log does not
    name (that one is shown by its key alone). Sixty-four bits of the key tell nodes apart where names look alike;
    the change line above lists the keys whole.
    """
    named = sorted((state.nodes[k], k) for k in keys if k in state.nodes)
    shown = [f"{name!r} ({key.hex()[:16]})" for name, key in named]
    shown += [f"an unnamed node ({k.hex()[:16]})" for k in sorted(k for k in keys if k not in state.nodes)]
    return ", ".join(shown)


def _served_log(client: Client, refusing: str) -> Iterator[SignedEntry]:
    """The server's log, page by page, each entry decoded from its signed encoding (the decoding beside it is
    for people); a page that repeats entries is caught by the replay, one without entries here."""
    from harbour.governance.fields import GovernanceError
    from harbour.governance.log import SignedEntry

    cursor: str | None = None
    while True:
        page = client.get("/v1/governance/entries", limit=MAX_LIMIT, cursor=cursor)
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise ApiError("the API's answer to /v1/governance/entries is not a page of items")
        for item in items:
            try:
                signed = SignedEntry.decode(bytes.fromhex(str(item.get("signed") if isinstance(item, dict) else None)))
            except (ValueError, GovernanceError) as exc:
                raise EntryMismatch(
                    f"{refusing}: an entry of the server's governance log is malformed: {exc}"
                ) from None
            yield signed
        cursor = page.get("next_cursor")
        if not cursor:
            return
        if not items:
            raise EntryMismatch(f"{refusing}: the server's governance log has an empty page before its end")
