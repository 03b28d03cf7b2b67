"""``harbour policy`` and ``harbour governance``: the rules in force, and the log of signed changes that set them.

``policy propose FILE`` checks the document locally first (the same parser the
service uses) so a typo is an exit-2 error naming the JSON path, then proposes
the governance change that puts it in force once its proposer and the admin
quorum sign it (``harbour approve``, the proposer included). ``policy explain``
asks what the policy would decide for a withdrawal without submitting one.

``governance entries`` and ``governance head`` read the organisation's
governance log; what ``harbour approve`` checks of a governance change before
signing it is :mod:`harbour.cli.review`. ``governance trust HASH`` pins the
genesis that check replays the log from (:mod:`harbour.cli.trusted_orgs`).
``governance nodes`` lists the signer nodes the log names (where the
organisation's vault keys may be made), and ``add-node``/``remove-node`` propose
changing them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from harbour.cli.apiclient import (
    DEFAULT_API,
    AllOption,
    ApiError,
    ApiOption,
    CursorOption,
    LimitOption,
    TokenOption,
    api_errors,
    connect,
    emit,
    emit_page,
    emit_proposal,
    list_command,
    note,
)
from harbour.cli.names import USER, Directory
from harbour.cli.params import FAILURE_EXIT, InputError, JsonOption, fail
from harbour.cli.transfer import (
    AmountOption,
    AssetOption,
    DecimalsOption,
    ToOption,
    VaultOption,
    payment,
    with_vault,
)

MAX_POLICY_FILE: Final = 60 * 1024
"""The API takes bodies up to 64 KiB; the document must fit with its envelope."""

policy_app = typer.Typer(help="The transaction policy: show, explain, propose a change.", no_args_is_help=True)
governance_app = typer.Typer(
    help="The governance log: its entries, its head, and how changes are proposed and signed.", no_args_is_help=True
)


# -- policy -----------------------------------------------------------------------------------------------


@policy_app.command("show")
def policy_show(api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """The policy in force: version, digest and document."""
    with api_errors(), connect(api, token) as client:
        policy = client.get("/v1/policy")
    if as_json:
        emit(policy, True)
        return
    emit({k: policy.get(k) for k in ("version", "digest", "transaction_id", "created_at")}, False)
    typer.echo(json.dumps(policy.get("document"), indent=2, sort_keys=True))


list_command(
    policy_app,
    "versions",
    "/v1/policy/versions",
    ["version", "digest", "transaction_id", "created_at"],
    "Every policy version, oldest first.",
)


def read_policy(path: Path) -> dict[str, Any]:
    from harbour.governance.policy import Policy, PolicyError

    try:
        if path.stat().st_size > MAX_POLICY_FILE:
            raise InputError(f"{path} is larger than {MAX_POLICY_FILE} bytes")
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        Policy.from_json(text)  # the service parses it again; this is for an early, precise error
    except PolicyError as exc:
        raise InputError(f"{path}: {exc}") from None
    document: dict[str, Any] = json.loads(text)
    return document


@policy_app.command("propose")
def policy_propose(
    file: Annotated[Path, typer.Argument(help="Policy document (JSON; see docs/policy.md).")],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Reuse to retry safely; default: a new random key.")
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new policy (admin); it takes effect once you and the admin quorum sign it."""
    with api_errors():
        document = read_policy(file)
        key = idempotency_key or f"cli-{uuid.uuid4()}"
        with connect(api, token) as client:
            tx = client.post(
                "/v1/policy/proposals", {"document": document}, headers={"Idempotency-Key": key}, retry=True
            )
    emit_proposal(tx, as_json)


@policy_app.command("explain")
def policy_explain(
    vault: VaultOption,
    asset: AssetOption,
    to: ToOption,
    amount: AmountOption,
    decimals: DecimalsOption = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the policy would decide for a withdrawal, rule by rule (nothing is submitted)."""
    with api_errors():
        body = payment(vault, asset, to, amount, decimals)
        with connect(api, token) as client:
            decision = client.post("/v1/transactions/explain", with_vault(client, body))
    if as_json:
        emit(decision, True)
        return
    emit({k: decision.get(k) for k in ("policy_version", "action", "rule", "requirement")}, False)
    for reason in decision.get("reasons") or []:
        typer.echo(f"  - {reason}")
    for step in decision.get("trace") or []:
        if isinstance(step, dict) and step.get("reached"):
            mark = "matched" if step.get("matched") else "skipped"
            why = "; ".join(step.get("reasons") or [])
            typer.echo(f"  rule {step.get('index')} {step.get('name')!r}: {mark}" + (f" ({why})" if why else ""))


# -- governance -------------------------------------------------------------------------------------------


@governance_app.command("entries")
def governance_entries(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    walk: AllOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The governance log's entries, oldest first: what each changed, who proposed and who signed it."""
    with api_errors(), connect(api, token) as client:
        page = client.pages("/v1/governance/entries", limit, cursor, walk)
        users = {} if as_json else Directory(client).names(USER)
    if as_json:
        emit(page, True)
        return

    def who(user_id: Any) -> str:
        return f"{users[user_id]} ({user_id})" if user_id in users else str(user_id)

    for entry in page["items"]:
        signers = ", ".join(
            who(s.get("user_id")) if s.get("user_id") else s.get("public_key", "?") for s in entry.get("signers") or []
        )
        proposer = who(entry.get("proposer"))
        typer.echo(
            f"entry {entry.get('seq')}  {entry.get('hash')}  proposed by {proposer} at {entry.get('at')}"
            + (f", signed by {signers}" if signers else " (the genesis: trusted by its hash)")
        )
        for change in entry.get("changes") or []:
            typer.echo(f"  - {change.get('description')}")
    if page.get("next_cursor"):
        typer.echo(f"(more: --cursor {page['next_cursor']}, or --all)", err=True)


@governance_app.command("head")
def governance_head(api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """The newest entry, the genesis it descends from, the admin quorum and the admins who sign."""
    with api_errors(), connect(api, token) as client:
        head = client.get("/v1/governance/head")
    emit(head, as_json)


def _node_name(value: str) -> str:
    from harbour.node.identity import IdentityError, check_name

    try:
        return check_name(value)
    except IdentityError as exc:
        raise InputError(f"NAME: {exc}") from None


NodeNameArgument = Annotated[str, typer.Argument(help="The signer node's name (as in its descriptor.json).")]


@governance_app.command("nodes")
def governance_nodes(api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """The signer nodes the log names (vault keys are made only on these), and the deployment's it does not."""
    with api_errors(), connect(api, token) as client:
        doc = client.get("/v1/governance/nodes")
    if as_json:
        emit(doc, True)
        return
    rows = [
        {
            **node,
            "in_log": "yes" if node.get("in_log") else "no",
            "configured": "yes" if node.get("configured") else "no",
        }
        for node in doc.get("nodes") or []
        if isinstance(node, dict)
    ]
    emit_page({"items": rows}, ["name", "in_log", "configured", "node_id", "identity_key"], False)
    note(f"as of governance entry {doc.get('seq')}", False)


@governance_app.command("add-node")
def governance_add_node(
    name: NodeNameArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose that the log name one of the deployment's signer nodes (admin): `node.add`.

    The node's identity key is the one the service's descriptor of it holds:
    before signing, compare it with the one its operator reads from the node.
    A node the log names under an older key (``harbour node rotate-keys``) is
    removed and added with the new key in the same entry.
    """
    with api_errors():
        body = {"name": _node_name(name)}
        with connect(api, token) as client:
            proposal = client.post("/v1/governance/nodes", body)
    emit_proposal(proposal, as_json)


@governance_app.command("remove-node")
def governance_remove_node(
    name: NodeNameArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose that the log stop naming a signer node (admin): `node.remove`; no new vault key is made on it."""
    with api_errors():
        checked = _node_name(name)
        with connect(api, token) as client:
            proposal = client.post(f"/v1/governance/nodes/{checked}/remove")
    emit_proposal(proposal, as_json)


@governance_app.command("trust")
def governance_trust(
    genesis: Annotated[
        str, typer.Argument(help="The genesis hash `harbour custody bootstrap` printed (64 hex digits).")
    ],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pin your organisation's genesis: `harbour approve` signs only entries of the log that starts from it.

    The pin is kept per API server and organisation (``$HARBOUR_TRUSTED_ORGS`` or
    ~/.harbour/trusted-orgs.json) and replaces any earlier one. Exit 1 if the
    server serves a log from another genesis: the pin stands, and ``harbour
    approve`` refuses that server's governance changes until the two agree.
    """
    from harbour.cli import trusted_orgs

    with api_errors():
        wanted = trusted_orgs.parse_genesis(genesis, "GENESIS")
        with connect(api, token) as client:
            org = client.get("/v1/me").get("org_id")
            served = client.get("/v1/governance/head").get("genesis")
            if not isinstance(org, str) or not org:
                raise ApiError("the API did not say which organisation your credential is of")
            replaced = trusted_orgs.pin(client.api, org, wanted)
            doc = {
                "api": client.api,
                "org": org,
                "genesis": wanted.hex(),
                "replaced": None if replaced is None else replaced.hex(),
                "served": served,
                "file": str(trusted_orgs.trust_file()),
            }
    emit(doc, as_json)
    if served != wanted.hex():
        raise fail(
            f"the server serves organisation {org}'s log from genesis {served}, not the pinned {wanted.hex()}: "
            f"harbour approve will refuse its governance changes",
            FAILURE_EXIT,
            as_json=False,  # the document above says it too
        )


@governance_app.command("push")
def governance_push(
    nodes: Annotated[
        str,
        typer.Option(
            "--nodes", help="The signer nodes' descriptor files, comma-separated (A.json,B.json): each is pushed to."
        ),
    ],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bring every signer node's copy of your organisation's log to the head your CLI verified.

    The log is read from the API and replayed from the genesis this CLI pinned
    (as ``harbour approve`` does); each node is sent the entries it lacks, which
    it verifies itself (pushing needs no certificate). Run it after a change lands,
    or from a scheduler: a service that withholds entries cannot keep the nodes at
    an older head, and evidence citing one is refused. Exit 1 if a node could not
    be brought to the head (unreachable, not enrolled, or holding another log).
    Nodes that serve mutual TLS are reached with the client certificate, key and
    CA that $HARBOUR_CLUSTER_TLS_CERT, _KEY and _CA name.
    """
    import asyncio
    import os

    from harbour.cli import review
    from harbour.cli.authority import read_descriptors
    from harbour.node.coordinator import ClusterError, Coordinator
    from harbour.node.tls import TlsError, TlsFiles

    with api_errors():
        descriptors = read_descriptors(nodes)
        try:
            files = TlsFiles.from_env(os.environ)
            tls = None if files is None else files.client_context()
        except TlsError as exc:
            raise InputError(str(exc)) from None
        with connect(api, token) as client:
            org = client.get("/v1/me").get("org_id")
            if not isinstance(org, str) or not org:
                raise ApiError("the API did not say which organisation your credential is of")
            log, trusted = review.verified_log(client, org, "refusing to push")
            if trusted is None:
                review.pin_first_use(client, org, log)
    name = log.genesis_hash.hex()

    async def push_all() -> list[dict[str, Any]]:
        async with Coordinator(timeout=30, tls=tls) as co:

            async def one(node: Any) -> dict[str, Any]:
                try:
                    sent = (await co.push([node], log))[node.name]
                    seq, head = (await co.heads([node], name))[node.name]
                except ClusterError as exc:
                    return {"node": node.name, "error": str(exc), "reason": exc.reason}
                return {"node": node.name, "sent": sent, "seq": seq, "head": head.hex()}

            return list(await asyncio.gather(*(one(d) for d in descriptors)))

    rows = asyncio.run(push_all())
    doc = {"org": org, "genesis": name, "seq": log.state.seq, "head": log.head.hex(), "nodes": rows}
    if as_json:
        emit(doc, True)
    else:
        typer.echo(f"organisation {org}: verified log at entry {log.state.seq} ({log.head.hex()})")
        for row in rows:
            if "error" in row:
                typer.echo(f"  {row['node']}: NOT at the head: {row['error']}")
            else:
                typer.echo(f"  {row['node']}: at entry {row['seq']}, {row['sent']} entr(y/ies) sent")
    behind = [row["node"] for row in rows if "error" in row]
    if behind:
        raise fail(f"not brought to the head: {', '.join(behind)}", FAILURE_EXIT, as_json=False)
