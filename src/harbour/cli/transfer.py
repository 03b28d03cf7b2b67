"""``harbour withdraw/approve/reject/cancel/status/transactions`` (approver keys: :mod:`harbour.cli.approverkey`).

``approve`` and ``reject`` never sign what the server hands over on trust. They
fetch the approval request, rebuild the statement from its fields with the same
code the service and the signer nodes use (:mod:`harbour.custody.statements`; for
a governance change, the entry's own bytes, decoded and shown, and for an
approval its place in the organisation's log replayed from the genesis this CLI
pinned, see :mod:`harbour.cli.review`), check that the fields
agree with the transaction and with the caller's organisation, refuse if the
server's statement differs by one byte, show what is signed, and only then sign
with the approver's Ed25519 key, which never leaves this machine.

``withdraw`` always sends an idempotency key (``--idempotency-key``, or a fresh
random one it prints): the client retries a dropped connection with the same
key, and so can the operator, without risking a second withdrawal.

Amounts are integers in base units (wei), or with ``--decimals`` a decimal
number of whole units converted exactly (``--amount 1.5 --decimals 18``).
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.cli import output
from harbour.cli.accounts import check_id
from harbour.cli.apiclient import (
    DEFAULT_API,
    AllOption,
    ApiError,
    ApiOption,
    Client,
    CursorOption,
    LimitOption,
    TokenOption,
    api_errors,
    connect,
    emit,
    emit_page,
    note,
)
from harbour.cli.approverkey import load_approver_key
from harbour.cli.names import USER, VAULT, Directory, named, resolve
from harbour.cli.params import FAILURE_EXIT, InputError, JsonOption, fail
from harbour.cli.tree import choice
from harbour.cli.waiting import FINAL_STATES, waiting_for

if TYPE_CHECKING:  # imported when a statement is built: the CLI starts without them
    from harbour.custody.statements import Subject
    from harbour.node.quorum import Decision

_IDEMPOTENCY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_AMOUNT = re.compile(r"([0-9]{1,78})(?:\.([0-9]{1,78}))?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

VaultOption = Annotated[str, typer.Option("--vault", help="The vault's name or id.")]
AssetOption = Annotated[str, typer.Option("--asset", help="Asset symbol (ETH, or a registered token).")]
ToOption = Annotated[str, typer.Option("--to", help="Destination address (EIP-55 if mixed case).")]
AmountOption = Annotated[str, typer.Option("--amount", help="Base units (wei), or whole units with --decimals.")]
DecimalsOption = Annotated[
    int | None, typer.Option("--decimals", help="Read --amount as whole units with this many decimals (ETH: 18).")
]
KeyOption = Annotated[Path, typer.Option("--key", help="Your approver private key (PEM, from approver-key new).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation after showing the intent.")]


# -- input ------------------------------------------------------------------------------------------------


def parse_amount(text: str, decimals: int | None) -> int:
    """Base units from ``text``: an integer, or with ``decimals`` a decimal number converted exactly.

    No float ever holds the value: ``1.1`` ETH is 1100000000000000000 wei, not
    1100000000000000088.
    """
    match = _AMOUNT.fullmatch(text.strip())
    if decimals is not None and not 0 <= decimals <= 36:
        raise InputError(f"--decimals must be 0..36, got {decimals}")
    if match is None or (match.group(2) is not None and decimals is None):
        raise InputError(
            f"--amount must be a whole number of base units (e.g. 1500000000000000000), or with --decimals "
            f"a decimal number such as 1.5; got {text!r}"
        )
    whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
    scale = decimals or 0
    if len(fraction) > scale:
        raise InputError(f"--amount {text} has more than {scale} decimal places")
    factor: int = 10**scale
    value = int(whole) * factor + int(fraction.ljust(scale, "0") or "0")
    if not 1 <= value < 2**256:
        raise InputError("--amount must be at least 1 base unit and below 2^256")
    return value


def payment(vault: str, asset: str, to: str, amount: str, decimals: int | None) -> dict[str, str]:
    """``{vault_id, asset, to, amount}`` from the options, each checked: what explain and estimate send.

    ``vault_id`` is still what the operator typed (a name or an id): :func:`with_vault` resolves it once connected.
    """
    return {
        "vault_id": vault,
        "asset": asset,
        "to": check_address(to, "--to"),
        "amount": str(parse_amount(amount, decimals)),
    }


def with_vault(client: Client, body: dict[str, str]) -> dict[str, str]:
    """``body`` with its ``vault_id`` (a name or an id) resolved to the vault's id."""
    return {**body, "vault_id": resolve(client, VAULT, body["vault_id"], "--vault")}


def check_address(text: str, what: str) -> str:
    if not _ADDRESS.fullmatch(text.strip()):
        raise InputError(f"{what} is 0x followed by 40 hex digits, got {text!r}")
    from harbour.chains.eip1559 import TransactionError, parse_address

    try:
        parse_address(text.strip())
    except TransactionError as exc:
        raise InputError(f"{what}: {exc}") from None
    return text.strip()


# -- withdrawals ------------------------------------------------------------------------------------------

FEE_LEVELS: Final = ("slow", "normal", "fast")
FeeLevelOption = Annotated[
    str | None,
    typer.Option(
        "--fee-level",
        parser=choice(FEE_LEVELS, "fee level"),
        help="normal is the default: caps that follow the chain (docs/api.md#fees).",
    ),
]
MaxFeeOption = Annotated[
    str | None, typer.Option("--max-fee-per-gas", help="Explicit EIP-1559 fee cap, wei per gas (with the tip cap).")
]
TipOption = Annotated[
    str | None, typer.Option("--max-priority-fee-per-gas", help="Explicit EIP-1559 tip cap, wei per gas.")
]


def _fees(level: str | None, max_fee: str | None, tip: str | None) -> dict[str, str]:
    """The fee fields of a request body; the service checks them (a level and caps, one cap alone: refused)."""
    if level is not None and level not in FEE_LEVELS:
        raise InputError("--fee-level is slow, normal or fast")
    for name, value in (("--max-fee-per-gas", max_fee), ("--max-priority-fee-per-gas", tip)):
        if value is not None and not (value.isascii() and value.isdigit()):
            raise InputError(f"{name} is a whole number of wei per gas")
    fields = {"fee_level": level, "max_fee_per_gas": max_fee, "max_priority_fee_per_gas": tip}
    return {k: v for k, v in fields.items() if v is not None}


def withdraw(
    vault: VaultOption,
    asset: AssetOption,
    to: ToOption,
    amount: AmountOption,
    decimals: DecimalsOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Reuse to retry safely; default: a new random key (printed)."),
    ] = None,
    note_text: Annotated[str | None, typer.Option("--note", help="A note stored with the withdrawal.")] = None,
    sign_with: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Sign the request with your approval key (PEM): needed when the policy depends on who initiates.",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="The vault address that pays (or its id); default: the first that can pay it alone."
        ),
    ] = None,
    fee_level: FeeLevelOption = None,
    max_fee_per_gas: MaxFeeOption = None,
    max_priority_fee_per_gas: TipOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a withdrawal (initiator); the policy decides whether it needs approvals.

    With ``--key`` the request is signed by you (docs/governance.md#signed-requests):
    the signer nodes then know who asked from your signature, not from the service.
    """
    with api_errors():
        value = parse_amount(amount, decimals)
        to = check_address(to, "--to")
        key = idempotency_key if idempotency_key is not None else f"cli-{uuid.uuid4()}"
        if not _IDEMPOTENCY.fullmatch(key):
            raise InputError("--idempotency-key is 1..128 characters of A-Z a-z 0-9 . _ : -")
        body = {"vault_id": vault, "asset": asset, "to": to, "amount": str(value), "note": note_text}
        if source is not None:
            body["source_address"] = source
        body |= _fees(fee_level, max_fee_per_gas, max_priority_fee_per_gas)
        private = None if sign_with is None else load_approver_key(sign_with)
        with connect(api, token) as client:
            directory = Directory(client)
            vault = body["vault_id"] = directory.resolve(VAULT, vault, "--vault")
            if private is not None:
                body |= _signed_request(client, private, key, vault, asset, to, value)
            try:
                tx = client.post("/v1/transactions", body, headers={"Idempotency-Key": key}, retry=True)
            except ApiError as exc:
                if exc.status is None:  # no answer: the withdrawal may or may not exist
                    raise ApiError(
                        f"{exc.detail}; retry with --idempotency-key {key} (never creates a second)"
                    ) from None
                raise
            labels = _labels(directory, as_json)
    if idempotency_key is None:
        note(f"idempotency key: {key} (pass --idempotency-key {key} to retry safely)", True)
    _emit_tx(tx, as_json, labels)


def _signed_request(
    client: Client, private: Ed25519PrivateKey, key: str, vault: str, asset: str, to: str, value: int
) -> dict[str, str]:
    """The request's id and the initiator's signature over it; the id follows from the idempotency key, so a retry
    sends the same request (Ed25519 signatures are deterministic) and the service returns the first one's result."""
    from harbour.governance.request import request_body, sign_request

    org = client.get("/v1/org")
    genesis, chain_id = org.get("genesis"), org.get("chain_id")
    if not isinstance(genesis, str) or len(genesis) != 64 or type(chain_id) is not int:
        raise ApiError("the API did not say which organisation's log it keeps and on which chain (/v1/org)")
    request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"harbour:withdrawal:{genesis}:{key}"))
    body = request_body(
        org=bytes.fromhex(genesis),
        chain_id=chain_id,
        transaction_id=request_id,
        vault=vault,
        asset=asset,
        destination=to,
        amount=value,
    )
    return {"id": request_id, "signature": sign_request(private, body).hex()}


Labels = dict[str, dict[str, str]]
"""``{"users": {id: name}, "vaults": {id: name}}``: what a transaction's ids are shown as."""


def _labels(directory: Directory, as_json: bool) -> Labels:
    """The names a transaction's ids are shown with (none under ``--json``: the API's view is printed as it is)."""
    if as_json:
        return {}
    return {"users": directory.names(USER), "vaults": directory.names(VAULT)}


def _emit_tx(tx: dict[str, Any], as_json: bool, labels: Labels | None = None) -> None:
    """A transaction: ``--json`` the API's view; otherwise its main fields, with names beside the ids."""
    if as_json:
        emit(tx, True)
        return
    names = (labels or {}).get("users", {})
    vaults = (labels or {}).get("vaults", {})

    def who(user_id: Any) -> str:
        name = names.get(str(user_id))
        return f"{name} ({user_id})" if name else str(user_id)

    fields = ["id", "kind", "state", "asset", "amount", "destination", "tx_hash", "error", "policy_version"]
    doc = {k: tx.get(k) for k in fields if k in tx}
    if tx.get("vault_id") is not None:
        vault = str(tx["vault_id"])
        doc["vault"] = f"{vaults[vault]} ({vault})" if vault in vaults else vault
    if tx.get("initiator_id") is not None:
        doc["initiator"] = who(tx.get("initiator_id"))
    approvals = tx.get("approvals") or []
    if approvals:
        doc["approvals"] = ", ".join(
            f"{who(a.get('approver_id'))} ({a.get('decision')}{', expired' if a.get('expired') else ''})"
            for a in approvals
        )
    waiting = waiting_for(tx, names)
    if waiting is not None:
        doc["waiting_for"] = waiting
    emit(doc, False)


def cancel(
    tx_id: Annotated[str, typer.Argument(help="Transaction id.")],
    fee_level: FeeLevelOption = None,
    max_fee_per_gas: MaxFeeOption = None,
    max_priority_fee_per_gas: TipOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a transaction not yet being signed; a broadcast one is replaced by a zero-value self-transfer.

    The replacement is a new transaction, approved like a withdrawal; the fee
    options are its fees (docs/custody.md#stuck-transactions).
    """
    with api_errors():
        tx_id = check_id(tx_id, "TX")
        fees = _fees(fee_level, max_fee_per_gas, max_priority_fee_per_gas)
        with connect(api, token) as client:
            tx = client.post(f"/v1/transactions/{tx_id}/cancel", fees or None)
    _emit_tx(tx, as_json)


def speed_up(
    tx_id: Annotated[str, typer.Argument(help="The broadcast transaction's id.")],
    fee_level: FeeLevelOption = None,
    max_fee_per_gas: MaxFeeOption = None,
    max_priority_fee_per_gas: TipOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a stuck broadcast withdrawal with the same payment at higher fees (a new transaction to approve)."""
    with api_errors():
        tx_id = check_id(tx_id, "TX")
        fees = _fees(fee_level, max_fee_per_gas, max_priority_fee_per_gas)
        with connect(api, token) as client:
            tx = client.post(f"/v1/transactions/{tx_id}/speed-up", fees)
    _emit_tx(tx, as_json)


def estimate(
    vault: VaultOption,
    asset: AssetOption,
    to: ToOption,
    amount: AmountOption,
    decimals: DecimalsOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The gas a withdrawal would be submitted with and, per fee level, its caps and maximum fee (wei)."""
    with api_errors():
        body = payment(vault, asset, to, amount, decimals)
        with connect(api, token) as client:
            found = client.post("/v1/transactions/estimate", with_vault(client, body))
    if as_json:
        emit(found, True)
        return
    doc: dict[str, Any] = {"gas_limit": found.get("gas_limit"), "default_level": found.get("default_level")}
    for name, caps in (found.get("levels") or {}).items():
        doc[name] = (
            f"max fee {caps.get('max_fee')} wei (max_fee_per_gas {caps.get('max_fee_per_gas')}, "
            f"max_priority_fee_per_gas {caps.get('max_priority_fee_per_gas')})"
        )
    emit(doc, False)


def status(
    tx_id: Annotated[str, typer.Argument(help="Transaction id.")],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Poll until it reaches a final state, saying on stderr what it waits for."),
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait may take.")] = 300.0,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 1.0,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A transaction's state. With --wait: exit 0 once confirmed, 1 if it ends failed, rejected or cancelled.

    It says what an unfinished transaction waits for (how many more approvals
    from which group, and who can still give them; or the sub-status that holds
    it). With --wait it polls, printing that to stderr each time it changes, and
    exits 1 if the transaction is still unfinished after --timeout.
    """
    with api_errors():
        tx_id = check_id(tx_id, "TX")
        if not 0 < timeout <= 86400 or not 0.05 <= interval <= 60:
            raise InputError("--timeout must be 0..86400 seconds and --interval 0.05..60")
        deadline = time.monotonic() + timeout
        with connect(api, token) as client, output.progress(f"waiting for {tx_id}", show=wait) as step:
            directory = Directory(client)
            tx = client.get(f"/v1/transactions/{tx_id}")
            users = directory.names(USER) if wait else {}
            said = None
            while wait and tx.get("state") not in FINAL_STATES:
                waiting = f"{tx.get('state')}: {waiting_for(tx, users)}"  # a state it may leave without changing
                step(waiting)
                if waiting != said:
                    typer.echo(f"{tx_id}: {waiting}", err=True)
                    said = waiting
                if time.monotonic() >= deadline:
                    _emit_tx(tx, as_json, _labels(directory, as_json))  # the --json document; the error on stderr
                    message = f"transaction {tx_id} is still {tx.get('state')} after {timeout:g} s: {waiting}"
                    raise fail(message, FAILURE_EXIT, as_json=False)
                time.sleep(interval)
                tx = client.get(f"/v1/transactions/{tx_id}")
            labels = _labels(directory, as_json)
    _emit_tx(tx, as_json, labels)
    if wait and tx.get("state") != "confirmed":
        raise typer.Exit(FAILURE_EXIT)


def transactions(
    state: Annotated[str | None, typer.Option("--state", help="Only transactions in this state.")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    walk: AllOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List transactions (withdrawals and governance changes), oldest first."""
    with api_errors(), connect(api, token) as client:
        page = client.pages("/v1/transactions", limit, cursor, walk, state=state)
        if not as_json:
            directory = Directory(client)
            named(page, directory, VAULT, "vault_id", "vault")
            named(page, directory, USER, "initiator_id", "initiator")
    emit_page(page, ["id", "kind", "state", "vault", "asset", "amount", "destination", "initiator"], as_json)


# -- approvals --------------------------------------------------------------------------------------------


class MismatchError(ApiError):
    """The server's approval request does not agree with itself or with the caller."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise MismatchError(f"refusing to sign: {what}")


def _asset_label(client: Client, intent_asset: str, symbol: str | None) -> tuple[str, int | None]:
    """``SYMBOL`` (and its decimals) for the intent's asset, checked against the registered assets."""
    page = client.pages("/v1/assets", 200, None, True)
    for asset in page["items"]:
        if (intent_asset == "ETH" and asset.get("kind") == "native") or asset.get("contract") == intent_asset:
            _expect(
                symbol is None or asset.get("symbol") == symbol,
                f"the intent's asset {intent_asset} is {asset.get('symbol')}, but the transaction says {symbol}",
            )
            return str(asset.get("symbol")), asset.get("decimals")
    return intent_asset, None


def _units(amount: int, decimals: int | None) -> str:
    if not decimals:
        return str(amount)
    factor: int = 10**decimals
    whole, fraction = divmod(amount, factor)
    text = f"{whole}.{fraction:0{decimals}d}".rstrip("0").rstrip(".")
    return text


def rebuild_statement(client: Client, request: dict[str, Any], tx_id: str, decision: str) -> tuple[bytes, Subject, str]:
    """Check an approval request and build the statement to sign: (statement, its subject, summary to show).

    The server's ``statement`` is the approval; it must equal the one rebuilt
    here from the request's fields. The statement signed is built from the same
    checked fields with ``decision`` (a rejection names itself, so it can never
    count as an approval).
    """
    from harbour.custody import statements
    from harbour.node import quorum

    tx = request.get("transaction")
    _expect(isinstance(tx, dict) and tx.get("id") == tx_id, "the approval request is for another transaction")
    assert isinstance(tx, dict)
    me = client.get("/v1/me")
    _expect(request.get("org") == me.get("org_id"), "the approval request names another organisation than yours")
    try:
        claimed = bytes.fromhex(str(request.get("statement")))
    except ValueError:
        raise MismatchError("refusing to sign: the server's statement is not hex") from None
    kind = tx.get("kind")
    signed: Decision = "reject" if decision == "reject" else "approve"  # a rejection names itself
    subject: Subject
    if kind == statements.WITHDRAWAL:
        try:
            intent = quorum.Intent.from_json(request.get("intent"))
            subject = statements.WithdrawalApproval(
                org=str(request.get("org")),
                transaction_id=tx_id,
                key_id=str(request.get("key_id")),
                path=str(request.get("path")),
                intent=intent,
            )
            rebuilt, to_sign = subject.statement(), subject.statement(signed)
        except quorum.EvidenceError as exc:
            raise MismatchError(f"refusing to sign: the approval request is malformed: {exc}") from None
        _expect(intent.recipient == tx.get("destination"), "the intent's recipient is not the transaction's")
        _expect(str(intent.amount) == tx.get("amount"), "the intent's amount is not the transaction's")
        _expect(intent.chain_id == tx.get("chain_id"), "the intent's chain is not the transaction's")
        _expect(
            (None if intent.max_fee is None else str(intent.max_fee)) == tx.get("max_fee"),
            "the intent's maximum fee is not the transaction's",
        )
        _expect(intent.replaces == tx.get("replaces_id"), "the intent replaces another transaction than it says")
        symbol, decimals = _asset_label(client, intent.asset, tx.get("asset"))
        shown = f"{_units(intent.amount, decimals)} {symbol}" + (
            f" ({intent.amount} base units)" if decimals else " (base units)"
        )
        summary = (
            f"withdrawal {tx_id}\n"
            f"  amount:  {shown}\n"
            f"  asset:   {intent.asset}\n"
            f"  from:    {intent.sender} (key {request.get('key_id')}, path {request.get('path')})\n"
            f"  to:      {intent.recipient}\n"
            f"  chain:   {intent.chain_id}\n"
            f"  max fee: {'-' if intent.max_fee is None else f'{intent.max_fee} wei'}\n"
            + (
                f"  replaces: {intent.replaces} (at its nonce: only one of the two is mined)\n"
                if intent.replaces
                else ""
            )
            + f"  note:    {tx.get('note') or '-'}"
        )
    elif kind == statements.GOVERNANCE:
        from harbour.cli.review import check_governance_request

        subject, summary = check_governance_request(request, tx, tx_id)
        rebuilt, to_sign = subject.statement(), subject.statement(signed)
    else:
        raise MismatchError(f"refusing to sign: unknown transaction kind {kind!r}")
    _expect(rebuilt == claimed, "the server's statement differs from the one rebuilt from the transaction's fields")
    if isinstance(subject, statements.GovernanceApproval) and signed == "approve":
        from harbour.cli.review import check_place_in_log  # a rejection signs no entry, so places none in the log

        summary += "\n" + check_place_in_log(client, subject)
    return to_sign, subject, summary


def _decide(
    decision: str, tx_id: str, key_path: Path, yes: bool, api: str, token: str | None, as_json: bool
) -> tuple[dict[str, Any], Labels]:
    with api_errors():
        tx_id = check_id(tx_id, "TX")
        key = load_approver_key(key_path)
        with connect(api, token) as client:
            request = client.get(f"/v1/transactions/{tx_id}/approval-request")
            statement, subject, summary = rebuild_statement(client, request, tx_id, decision)
            note(f"{decision.upper()} {summary}", as_json)
            if not yes:
                if not sys.stdin.isatty():
                    raise InputError("not a terminal: pass --yes to sign without a confirmation prompt")
                if not typer.confirm(f"Sign this {decision}?", err=as_json):
                    raise fail("not signed", FAILURE_EXIT)
            signature = subject.sign(key, statement)
            tx = dict(client.post(f"/v1/transactions/{tx_id}/{decision}", {"signature": signature.hex()}))
            return tx, _labels(Directory(client), as_json)


def approve(
    tx_id: Annotated[str, typer.Argument(help="Transaction id.")],
    key: KeyOption,
    yes: YesOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check, show and sign your approval of a transaction (approver; admin, proposer included, for governance)."""
    tx, labels = _decide("approve", tx_id, key, yes, api, token, as_json)
    _emit_tx(tx, as_json, labels)


def reject(
    tx_id: Annotated[str, typer.Argument(help="Transaction id.")],
    key: KeyOption,
    yes: YesOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check, show and sign your rejection of a transaction (approver; admin for governance changes)."""
    tx, labels = _decide("reject", tx_id, key, yes, api, token, as_json)
    _emit_tx(tx, as_json, labels)
