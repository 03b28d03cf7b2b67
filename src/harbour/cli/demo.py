"""``harbour demo``: the custody service end to end on embedded defaults (``make demo``).

SQLite, the embedded Ethereum chain and three signer nodes as local processes:
an organisation from its genesis governance entry (two admins, each change
needing both), a policy change and a 2-of-3 threshold-ECDSA vault generated on
the nodes, each bound by a governance entry both admins sign, an address
derived from it and funded (the deposit is detected), and a withdrawal that the
policy sends to two approvers. The approvers sign with their own keys; each node
decides the withdrawal itself from the organisation's governance log (the
policy, the approvers and their keys, which it verified entry by entry) and
checks those signatures before it signs; the transaction is broadcast and confirmed.
The demo ends with the transaction hash, the balances, and an inclusion proof of
the confirmation in the audit log, checked against the signed tree head.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rich.console import Console

from harbour.cli import output
from harbour.custody import audit as audit_log
from harbour.custody import auditverify, statements
from harbour.custody import config as cfg
from harbour.custody.service import Actor, Custody, Founder, FoundingAsset
from harbour.custody.views import Page
from harbour.node.localnet import create_nodes, running

ETH = 10**18
FUNDING = 5 * ETH
AMOUNT = 1_250_000_000_000_000_000  # 1.25 ETH
COUNTERPARTY = "0x1111111111111111111111111111111111111111"
T = TypeVar("T")


def _hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def _eth(wei: int) -> str:
    whole, frac = divmod(wei, ETH)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") + " ETH"


class _Steps:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.n = 0

    def run(self, title: str, action: Callable[[], T], done: Callable[[T], str] | None = None) -> T:
        self.n += 1
        t0 = time.monotonic()
        with self.console.status(f"[bold]{self.n:2d}.[/bold] {title} ..."):
            result = action()
        detail = f" [dim]{done(result)}[/dim]" if done else ""
        self.console.print(f"[green]✓[/green] {self.n:2d}. {title} ({time.monotonic() - t0:.2f} s){detail}")
        return result


def _wait(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def _approve(custody: Custody, actor: Actor, key: Ed25519PrivateKey, tx_id: str) -> dict[str, Any]:
    """What ``harbour approve`` does: rebuild the statement from the facts (a governance entry: decode its
    bytes), then sign it."""
    request = custody.approval_request(actor, tx_id)
    subject = statements.from_request(request, tx_id)
    rebuilt = subject.statement()
    if rebuilt.hex() != request["statement"]:
        raise RuntimeError("the service asked to sign something other than the transaction it shows")
    return custody.approve(actor, tx_id, signature=subject.sign(key, rebuilt).hex())


def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Keep the deployment here (default: a temporary directory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON at the end.")] = False,
) -> None:
    """Run the custody demo: vault, deposit, policy, two approvals, MPC signing, broadcast, audit proof."""
    console = Console(stderr=as_json)
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="harbour-demo-") as tmp:
            summary = _demo(Path(tmp), console)
    else:
        summary = _demo(directory, console)
    if as_json:
        output.emit(summary, True)


def _demo(root: Path, console: Console) -> dict[str, Any]:
    steps = _Steps(console)
    console.print("[bold]Harbour custody demo[/bold]: SQLite, embedded Ethereum chain, three signer-node processes")
    keys = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "dave", "erin")}

    config = steps.run(
        "Create the custody home (authority key, audit key, SQLite)",
        lambda: cfg.init_home(root / "custody", passphrase="harbour demo custody keys"),  # noqa: S106 (throw-away)
    )
    nodes = steps.run(
        "Create three signer nodes that trust the custody authority",
        lambda: create_nodes(
            root / "nodes",
            3,
            [cfg.authority_public(config.home)],
            passphrase="harbour demo node passphrase",  # noqa: S106 (throw-away demo nodes)
            node_options={"require_evidence": True, "organisations_only": True},
        ),
        lambda ns: ", ".join(n.name for n in ns) + " (each signs only what the organisation's governance log allows)",
    )
    config.nodes = [str(n.directory / "descriptor.json") for n in nodes]
    config.save()
    with running(nodes):
        steps.run(
            "Start the node processes on loopback", lambda: None, lambda _: ", ".join(n.descriptor.url for n in nodes)
        )
        deployment = steps.run("Open the service and its signing pipeline", lambda: cfg.open_deployment(config))
        try:
            return _flow(deployment, keys, steps, console)
        finally:
            deployment.close()


def _flow(
    deployment: cfg.Deployment, keys: dict[str, Ed25519PrivateKey], steps: _Steps, console: Console
) -> dict[str, Any]:
    custody, chain = deployment.custody, deployment.chain
    ids = {name: str(uuid.uuid4()) for name in ("alice", "bob", "frank", "carol", "dave", "erin")}

    def founder(name: str, roles: tuple[str, ...], key: bool = True) -> Founder:
        return Founder(name, roles, _hex(keys[name]) if key else None, id=ids[name])

    boot = steps.run(
        "Create the organisation from its genesis: admins alice and bob (each change needs both), "
        "frank (initiator), carol, dave, erin (approvers), ETH",
        lambda: custody.bootstrap(
            "Victoria Harbour Custody",
            [
                founder("alice", ("admin",)),
                founder("bob", ("admin",)),
                founder("frank", ("initiator",), key=False),
                *(founder(n, ("approver",)) for n in ("carol", "dave", "erin")),
            ],
            quorum=1,
            assets=[FoundingAsset("ETH")],
        ),
        lambda b: (
            f"org {b['organisation']['id'][:8]}…, genesis {b['genesis'][:16]}… (enrolled on "
            f"{', '.join(b['enrolled'])}), initial policy: deny everything"
        ),
    )
    tokens = {c["name"]: c["token"] for c in boot["credentials"]}
    alice, bob = custody.authenticate(tokens["alice"]), custody.authenticate(tokens["bob"])
    frank = custody.authenticate(custody.issue_credential(alice, ids["frank"])["token"])
    people = {"alice": alice, "bob": bob, "frank": frank}
    for name in ("carol", "dave", "erin"):
        people[name] = custody.authenticate(custody.issue_credential(alice, ids[name])["token"])

    def governed(proposal: dict[str, Any]) -> dict[str, Any]:
        """Alice proposed it: she signs the entry, then bob; the second signature lands it."""
        _approve(custody, alice, keys["alice"], proposal["id"])
        return _approve(custody, bob, keys["bob"], proposal["id"])

    approvers = [ids[n] for n in ("carol", "dave", "erin")]
    document = {
        "rules": [
            {
                "name": "treasury withdrawals",
                "action": "require_approval",
                "approvals": {"combine": "all", "groups": [{"name": "treasury", "members": approvers, "threshold": 2}]},
            }
        ]
    }
    steps.run(
        "Change the policy: any withdrawal needs 2 of 3 treasury approvers (a governance entry alice and bob sign)",
        lambda: governed(custody.propose_policy(alice, document)),
        lambda t: f"governance entry {t['seq']} {t['state']}",
    )
    proposal = steps.run(
        "Generate the vault key: 2-of-3 threshold ECDSA on the nodes, a key of the organisation",
        lambda: custody.create_vault(alice, name="treasury", threshold=2),
        lambda p: p["changes"][0]["description"],
    )
    steps.run(
        "Bind the key as the organisation's vault (a governance entry alice and bob sign)",
        lambda: governed(proposal),
        lambda t: f"governance entry {t['seq']} {t['state']}",
    )
    vault = custody.get_vault(alice, proposal["changes"][0]["id"])
    address = steps.run(
        "Derive the vault's first address (BIP-32 m/0, public derivation)",
        lambda: custody.derive_address(alice, vault["id"], label="hot")["address"],
        lambda a: a,
    )
    funding_tx = steps.run(f"Fund it with {_eth(FUNDING)} from a chain account", lambda: chain.fund(address, FUNDING))
    del funding_tx
    deposit = steps.run(
        "Detect and confirm the deposit",
        lambda: _wait(
            lambda: next(
                (d for d in custody.list_deposits(alice, Page(limit=10))["items"] if d["state"] == "confirmed"), None
            ),
            "the deposit",
        ),
        lambda d: f"{_eth(int(d['amount']))} in {d['tx_hash'][:18]}…",
    )
    del deposit
    tx = steps.run(
        f"Frank asks to withdraw {_eth(AMOUNT)} to {COUNTERPARTY[:10]}…",
        lambda: custody.submit_withdrawal(
            frank,
            vault_id=vault["id"],
            asset="ETH",
            to=COUNTERPARTY,
            amount=AMOUNT,
            idempotency_key="demo-withdrawal-1",
        ),
        lambda t: f"state {t['state']}: rule {t['decision']['rule']!r}",
    )
    steps.run(
        "Carol approves (signs the statement with her own key)",
        lambda: _approve(custody, people["carol"], keys["carol"], tx["id"]),
        lambda t: t["state"],
    )
    steps.run("Dave approves", lambda: _approve(custody, people["dave"], keys["dave"], tx["id"]), lambda t: t["state"])

    def final() -> dict[str, Any] | None:
        view = custody.get_transaction(alice, tx["id"])
        return view if view["state"] in ("confirmed", "failed") else None

    done = steps.run(
        "Nodes judge it from the organisation's log (policy, approvers, both signatures), sign; broadcast; confirm",
        lambda: _wait(final, "the withdrawal"),
        lambda t: f"{t['state']} in block {t['block_number']}, signed by nodes {t['signers']}, nonce {t['nonce']}",
    )
    if done["state"] != "confirmed":
        raise RuntimeError(f"the withdrawal failed: {done['error']}")

    auditor_proof = steps.run(
        "Fetch and check an audit inclusion proof of the confirmation", lambda: _proof(custody, alice, tx["id"])
    )
    report = steps.run(
        "Verify the whole audit log", lambda: _verify(deployment), lambda r: f"{r['size']} events, ok={r['ok']}"
    )
    vault_balance = chain.balance(address)
    counterparty_balance = chain.balance(COUNTERPARTY)
    console.print()
    console.print(f"[bold]transaction hash[/bold]  {done['tx_hash']}")
    console.print(
        f"[bold]vault {address}[/bold]  {_eth(vault_balance)} "
        f"(was {_eth(FUNDING)}; paid {_eth(AMOUNT)} + gas {_eth(int(done['fee']))})"
    )
    console.print(f"[bold]counterparty {COUNTERPARTY}[/bold]  {_eth(counterparty_balance)}")
    console.print(
        f"[bold]audit proof[/bold]  event #{auditor_proof['index']} ({auditor_proof['event']['kind']}) is leaf "
        f"{auditor_proof['index']} of the signed tree of size {auditor_proof['tree_size']}, "
        f"root {auditor_proof['head']['root'][:16]}…, path of {len(auditor_proof['audit_path'])} hashes: verified"
    )
    console.print(f"[dim]finished in {time.monotonic() - steps.started:.1f} s[/dim]")
    return {
        "transaction": done,
        "balances": {address: str(vault_balance), COUNTERPARTY: str(counterparty_balance)},
        "audit_proof": auditor_proof,
        "audit_verify": report,
    }


def _proof(custody: Custody, actor: Actor, tx_id: str) -> dict[str, Any]:
    page = custody.audit_events(actor, Page(limit=200))
    events = list(page["items"])
    while page["next_cursor"]:
        page = custody.audit_events(actor, Page(limit=200, cursor=page["next_cursor"]))
        events.extend(page["items"])
    event = next(e for e in events if e["kind"] == "transaction.confirmed" and e["subject"] == tx_id)
    proof = custody.audit_proof(actor, event["index"])
    head = custody.audit_head(actor)
    if not audit_log.verify_inclusion_proof(proof, head["public_key"]):
        raise RuntimeError("the audit inclusion proof does not verify")
    return proof


def _verify(deployment: cfg.Deployment) -> dict[str, Any]:
    custody = deployment.custody
    with custody.uow.read() as session:
        report = auditverify.verify_log(custody.audit, session)
    if not report.ok:
        raise RuntimeError(f"audit log verification failed: {report.problem}")
    return report.to_json()
