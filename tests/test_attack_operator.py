"""Attacks on the operator-facing features, each of which must be refused.

Each test plays one attacker against the real code and asserts the outcome a
secure deployment must have; a failing test here is a weakness still open.
"""

from __future__ import annotations

from typing import Any

from harbour.cli.policyview import review
from harbour.governance.policy import Policy
from harbour.governance.state import OrgState, User
from harbour.util import text

ALICE, BOB, MALLORY = (f"00000000-0000-4000-8000-0000000000a{i}" for i in range(1, 4))


def _group(members: list[str], threshold: int = 1) -> dict[str, Any]:
    return {
        "rules": [
            {
                "name": "withdrawals",
                "match": {},
                "action": "require_approval",
                "approvals": {
                    "combine": "all",
                    "groups": [{"name": "treasury", "members": members, "threshold": threshold}],
                },
            }
        ]
    }


def _state(users: dict[str, User], policy: dict[str, Any]) -> OrgState:
    return OrgState(
        org="org-1",
        genesis=b"\0" * 32,
        seq=3,
        head=b"\4" * 32,
        quorum=2,
        users=users,
        policy=Policy.from_document(policy),
        address_book={},
        vaults={},
        assets={},
        credentials={},
        nodes={},
    )


def test_approve_never_shows_a_policy_handing_the_group_to_one_user_as_the_policy_in_force() -> None:
    """An admin names a user ``alice, bob`` (a valid name) and proposes a policy whose only approver is that user.

    ``harbour approve`` joins a group's member names with ``", "``, so the one-member group of the
    new policy reads exactly as ``alice, bob`` of the policy in force: the other admins are told the
    rules are unchanged and sign a policy that lets one user approve every withdrawal alone.
    """
    mallory_name = text.name("alice, bob")  # accepted as a name: punctuation is not refused
    users = {
        ALICE: User(ALICE, "alice", frozenset({"approver"}), b"\1" * 32),
        BOB: User(BOB, "bob", frozenset({"approver"}), b"\2" * 32),
        MALLORY: User(MALLORY, mallory_name, frozenset({"approver"}), b"\3" * 32),
    }
    in_force = _group([ALICE, BOB], 1)
    proposed = Policy.from_document(_group([MALLORY], 1))
    assert proposed.digest() != Policy.from_document(in_force).digest()
    lines = review(proposed, _state(users, in_force))
    assert lines[1] != "  rules:   the same as the policy in force (only its form differs)", (
        "a policy that replaces a group's members by another user is shown as the rules in force"
    )


def test_approve_never_shows_a_reshare_onto_other_nodes_as_the_committee_it_had() -> None:
    """A reshare that hands the key from n2 and n3 to a node the log names ``n2, n3`` reads as no change.

    ``harbour approve`` joins the committee's node names with ``", "``, so ``n1, n2, n3`` before and
    ``n1`` plus a node named ``n2, n3`` after print as the same committee at the same threshold: the
    admins are told the key moves nowhere. (The change line above it lists the identity keys in hex
    and their count, which does differ: the names line contradicts it rather than replacing it.)
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from harbour.cli.review import _target
    from harbour.governance.committee import ReshareVault
    from harbour.governance.holding import Holding
    from harbour.governance.state import Vault

    n1, n2, n3, other = sorted(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for _ in range(4)
    )
    nodes = {n1: "n1", n2: "n2", n3: "n3", other: text.name("n2, n3")}
    generator = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")

    def holding(holders: tuple[bytes, ...]) -> Holding:
        return Holding(b"\0" * 32, "vault-key", generator, b"\5" * 32, 2, tuple(sorted(holders)))

    vault = Vault("vault-1", "treasury", holding((n1, n2, n3)))
    state = OrgState(
        org="org-1",
        genesis=b"\0" * 32,
        seq=3,
        head=b"\4" * 32,
        quorum=2,
        users={},
        policy=None,
        address_book={},
        vaults={vault.id: vault},
        assets={},
        credentials={},
        nodes=nodes,
    )
    line = _target(state, ReshareVault(vault.id, holding((n1, other)), ()))
    assert line is not None
    before, _, after = line.partition("; then by ")
    assert before.rpartition("held by ")[2] != after, f"two different committees read alike: {line}"


def test_the_serving_line_and_messages_never_carry_a_chain_credential_or_a_passphrase() -> None:
    """Credentials the redaction misses reach a JSON log line as they are.

    ``custody serve`` logs its chain URL (``extra={"chain": config.chain}``); a provider URL carries its
    credential as ``?access_token=`` or ``?apikey=``. ``\\btoken=`` does not match inside ``access_token=``
    (``_`` is a word character), nor ``\\bpassphrase=`` inside ``HARBOUR_CUSTODY_PASSPHRASE=``, and
    ``Authorization: Basic`` is no bearer credential: each is written to the log in the clear.
    """
    import io
    import json
    import logging

    from harbour.util import logs

    secret = "s3cr3tC0dE9f8e7d6c5b4a"
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    try:
        log = logging.getLogger("harbour.cli.custody")
        log.info("serving", extra={"chain": f"https://rpc.example.net/eth?access_token={secret}"})
        log.info("serving", extra={"chain": f"https://rpc.example.net/eth?apikey={secret}"})
        log.warning("the environment holds HARBOUR_CUSTODY_PASSPHRASE=%s", secret)
        log.warning("a proxy answered for Authorization: Basic %s", secret)
    finally:
        logs.unconfigure()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4
    leaked = [line for line in lines if secret in json.dumps(line)]
    assert not leaked, f"{len(leaked)} of 4 log lines carry the secret: {leaked}"


def test_the_live_database_is_its_owners_alone_as_its_backups_are(tmp_path: Any) -> None:
    """Another user of the machine reads the whole custody database in a home made with the usual umask.

    ``custody backup`` writes its copy owner-readable only, because the database holds the credential
    hashes and the whole business record; but the home is created 0755 and the SQLite files the service
    creates in it (``custody.db``, ``-wal``, ``-shm``) follow the umask: 0644, readable by every local user.
    """
    import os
    import stat

    from harbour.custody import config as cfg

    home = tmp_path / "home"
    old = os.umask(0o022)  # the common default umask of a login shell or a service manager
    try:
        deployment = cfg.open_deployment(cfg.init_home(home, passphrase=None), start=False)
        deployment.close()
    finally:
        os.umask(old)
    exposed = {
        path.name: oct(stat.S_IMODE(path.stat().st_mode))
        for path in [home, *home.glob("custody.db*")]
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) and (path == home or path.name.startswith("custody.db"))
    }
    assert "custody.db" in {p.name for p in home.iterdir()}
    readable_db = {n: m for n, m in exposed.items() if n.startswith("custody.db")}
    assert not (readable_db and "home" in exposed), f"other users can read the live database: {exposed}"


def test_a_database_password_is_never_kept_where_every_local_user_reads_it(tmp_path: Any) -> None:
    """``custody init --database postgresql://app:PASSWORD@...`` keeps the password in a world-readable file.

    The operations guide says a password belongs in ``~/.pgpass``, never in custody.json, and
    ``custody migrate`` refuses such a URL; ``custody init`` takes it, prints it redacted, and saves it
    in custody.json, mode 0644 in a 0755 home, where any user of the machine reads it.
    """
    import os
    import stat

    from typer.testing import CliRunner

    from harbour.cli.main import app

    home = tmp_path / "home"
    password = "Tr0ub4dor-and-3-more-words"
    url = f"postgresql://harbour_app:{password}@127.0.0.1:5432/custody"
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(
            app,
            ["custody", "init", "--home", str(home), "--database", url],
            env={"HARBOUR_CUSTODY_PASSPHRASE": "plinth marrow cobalt sienna quiver"},
        )
    finally:
        os.umask(old)
    if result.exit_code != 0:  # refused: then for the password, said so, and nothing written
        assert "password" in result.output, result.output
        assert not (home / "custody.json").exists()
        return
    config_file = home / "custody.json"
    readable = bool(config_file.stat().st_mode & stat.S_IROTH) and bool(home.stat().st_mode & stat.S_IXOTH)
    assert not (password in config_file.read_text() and readable), (
        f"custody.json ({oct(stat.S_IMODE(config_file.stat().st_mode))}) holds the database password for every user"
    )


def test_an_anonymous_caller_cannot_make_the_service_call_its_nodes_once_per_request(tmp_path: Any) -> None:
    """``GET /v1/ready`` needs no credential and asks every signer node afresh, each time.

    Sixteen anonymous requests at once open sixteen connections to a node that does not answer (a
    node down behind a firewall that drops packets), each holding one of the API's worker threads for
    the probe's two seconds: anyone who reaches the API multiplies their load onto the signer network
    and the chain node, and can keep the API's worker threads busy while a node is slow.
    """
    import socket
    import threading

    import httpx

    from harbour.api.server import BackgroundServer
    from harbour.custody import config as cfg
    from harbour.node.config import init_node
    from harbour.node.keyfile import MIN_N

    silent = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = silent.getsockname()[1]
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = silent.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    home = tmp_path / "home"
    config = cfg.init_home(home, passphrase=None)
    init_node(
        home / "n1",
        name="n1",
        listen=f"127.0.0.1:{port}",
        authorities=[cfg.authority_public(home)],
        passphrase="p" * 12,
        kdf_n=MIN_N,
        organisations_only=True,
    )
    config.nodes = ["n1/descriptor.json"]
    config.save()
    deployment = cfg.open_deployment(cfg.CustodyConfig.load(home), start=False)
    try:
        with BackgroundServer(deployment.custody) as server:
            statuses: list[int] = []

            def ask() -> None:
                statuses.append(httpx.get(server.url + "/v1/ready", timeout=30).status_code)

            askers = [threading.Thread(target=ask) for _ in range(16)]
            for asker in askers:
                asker.start()
            for asker in askers:
                asker.join()
        assert statuses == [503] * 16, statuses
        assert len(held) <= 2, f"16 anonymous requests opened {len(held)} connections to the signer node"
    finally:
        deployment.close()
        silent.close()
        for conn in held:
            conn.close()
