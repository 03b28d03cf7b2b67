"""The KOS-failure block cannot be removed, and the base-OT budget holds (node/compromise.py).

Real nodes in one process and a 2-of-3 threshold-ECDSA key. Party 2 runs code whose
OT-extension message to party 1 fails party 1's KOS check, which may have told it one
bit of party 1's pairwise secret (docs/nodes.md, "A failed check in threshold-ECDSA
signing"). Node 1 must then never sign with party 2 again until a committed refresh.
Each attack below tries to lift that block with write access to node 1's directory
but not its key-encryption key: deleting store objects, putting back the key record
from before the failure. The one rollback that does lift it (the log put back too)
is shown as the documented limit, so that the tests prove it is the log that protects
the mark.

Then the base-OT incidents: node 2's base-OT messages fail node 1's verification in
key generations, node 1 counts them, and past the budget runs no threshold-ECDSA
setup with node 2 until an operator clears the count (``harbour node incidents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from typer.testing import CliRunner

from harbour.cli.main import app
from harbour.crypto import ecdsa
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import SETUP_ABORT_BUDGET, EcdsaSetupParty, compromised_peers
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import Envelope, Party, UsageError, encode_payload
from harbour.node import approval, compromise, signlog
from harbour.node.config import CONFIG_OBJECT
from harbour.node.coordinator import ClusterError, ClusterKey, SignOutcome, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.service import HEDGE_KEY, NodeService, init_node
from harbour.node.staging import read_key
from harbour.node.store import SecretStore
from test_node_service import PASS, coordinator, keygen, make_nodes, refused, start_request

ECDSA = "ecdsa-secp256k1"
FROST = "frost-secp256k1"
CHEATER, VICTIM = 2, 1


# -- cheating code ---------------------------------------------------------------------------------


def _rewrite(env: Envelope, field: str) -> Envelope:
    """``env`` with the last byte of one payload field flipped, re-encoded as its sender would."""
    body = cbor2.loads(env.payload)
    value = bytearray(body.pop(field))
    value[-1] ^= 1
    body.pop("v")
    return dataclasses.replace(env, payload=encode_payload({**body, field: bytes(value)}))


@contextlib.contextmanager
def cheating(party_class: type[Party[Any]], field: str, sender: int = CHEATER, to: int = VICTIM) -> Iterator[None]:
    """While open, party ``sender`` of every ``party_class`` session sends ``to`` a corrupted first message.

    The corruption happens in the sender's own code, before its node seals the
    message, as a malicious node would do it: the transport sees nothing wrong.
    """
    honest = party_class._on_start

    def on_start(self: Any) -> list[Envelope]:
        out: list[Envelope] = honest(self)
        if self.me != sender:
            return out
        return [_rewrite(env, field) if env.recipient == to else env for env in out]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(party_class, "_on_start", on_start)
        yield


def kos_cheat() -> contextlib.AbstractContextManager[None]:
    """Party 2's OT-extension message to party 1 (its t̃) fails party 1's KOS check."""
    return cheating(EcdsaSigner, "vole")


def base_ot_cheat() -> contextlib.AbstractContextManager[None]:
    """Party 2's first base-OT message to party 1 (its proof of knowledge) fails party 1's verification."""
    return cheating(EcdsaSetupParty, "ot")


# -- the cluster -------------------------------------------------------------------------------------


class Cluster:
    """Three nodes in this process, their authority, and one 2-of-3 key on them."""

    def __init__(self, root: Path, scheme: str = ECDSA) -> None:
        made = make_nodes(root, 3, counters=False)
        self.authority: approval.AuthorityKey = made[0]
        self.nodes: list[NodeService] = made[1]
        self.descriptors: list[NodeDescriptor] = made[2]
        self.clock: Any = made[3]
        self.key: ClusterKey = keygen(self.authority, self.nodes, self.descriptors, scheme)

    def node(self, party: int) -> NodeService:
        return self.nodes[party - 1]

    def node_id(self, party: int) -> str:
        return self.descriptors[party - 1].node_id

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def reopen(self, party: int, change: Callable[[Path], None] = lambda directory: None) -> NodeService:
        """Stop the node, ``change`` its directory, start it again."""
        node = self.node(party)
        directory = node.directory
        node.close()
        change(directory)
        self.nodes[party - 1] = NodeService.open(directory, passphrase=PASS, clock=self.clock)
        return self.nodes[party - 1]

    def sign_certificate(self, signers: list[int], message: bytes) -> bytes:
        return approval.issue(
            self.authority,
            kind="sign",
            signers=signers,
            key_id=self.key.key_id,
            digests=[message],
            now=int(time.time()),
            expires_in=60,
        )

    def sign(self, signers: list[int], message: bytes = hashlib.sha256(b"pay").digest()) -> SignOutcome:
        certificate = self.sign_certificate(signers, message)

        async def go() -> SignOutcome:
            async with coordinator(self.nodes, self.descriptors) as co:
                outcome: SignOutcome = await co.sign(self.key, message, certificate)
                return outcome

        return asyncio.run(go())

    def sign_request(self, signers: list[int], sid: bytes) -> dict[str, Any]:
        message = hashlib.sha256(sid).digest()
        args = {"key_id": self.key.key_id, "path": "m", "message": message, "signers": signers}
        return start_request("sign", args, certificate=self.sign_certificate(signers, message), sid=sid)

    def admin(self, run: Callable[[Any], Any]) -> Any:
        async def go() -> Any:
            async with coordinator(self.nodes, self.descriptors) as co:
                return await run(co)

        return asyncio.run(go())

    def refresh(self) -> ClusterKey:
        certificate = approval.issue(
            self.authority, kind="refresh", key_id=self.key.key_id, params={}, now=int(time.time()), expires_in=60
        )
        key: ClusterKey = self.admin(lambda co: co.refresh(self.key, certificate))
        return key

    def reshare(self, parties: list[int], *, dealers: list[int] | None = None) -> ClusterKey:
        nodes = [self.descriptors[p - 1] for p in parties]
        params = admin_params("reshare", threshold=2, nodes=nodes, key=self.key, dealers=dealers)
        certificate = approval.issue(
            self.authority, kind="reshare", key_id=self.key.key_id, params=params, now=int(time.time()), expires_in=60
        )
        key: ClusterKey = self.admin(lambda co: co.reshare(self.key, nodes, 2, certificate, dealers=dealers))
        return key

    def keygen(self, parties: list[int], scheme: str = ECDSA) -> ClusterKey:
        chosen = [self.nodes[p - 1] for p in parties]
        return keygen(self.authority, chosen, [self.descriptors[p - 1] for p in parties], scheme)


def marks(node: NodeService, key_id: str) -> frozenset[int]:
    """The parties the node's stored share of ``key_id`` is marked compromised for."""
    return compromised_peers(read_key(node.store, key_id)[0])


def key_record(directory: Path, key_id: str) -> Path:
    return directory / "store" / "objects" / "keys" / key_id


def log_of(node: NodeService) -> list[signlog.Entry]:
    return list(signlog.entries(node.directory / "sign.log"))


def refused_unspent(node: NodeService, request: dict[str, Any], reason: str) -> str:
    """The refusal, checked to come before the certificate's nonce was spent and before anything was logged."""
    spent, logged = len(node.ledger), len(log_of(node))
    message = refused(node, request, reason)
    assert len(node.ledger) == spent, "the certificate was spent"
    assert len(log_of(node)) == logged
    return message


@dataclasses.dataclass
class Failure:
    """A cluster right after one signing session {1, 2} in which party 2 failed party 1's KOS check."""

    cluster: Cluster
    error: ClusterError
    key_record_before: bytes
    log_before: bytes

    @property
    def key_id(self) -> str:
        return self.cluster.key.key_id


@pytest.fixture
def failure(tmp_path: Path) -> Iterator[Failure]:
    cluster = Cluster(tmp_path)
    directory = cluster.node(1).directory
    key_before = key_record(directory, cluster.key.key_id).read_bytes()
    log_before = (directory / "sign.log").read_bytes()
    with kos_cheat(), pytest.raises(ClusterError) as info:
        cluster.sign([1, 2])
    yield Failure(cluster, info.value, key_before, log_before)
    cluster.close()


# -- a real KOS failure ------------------------------------------------------------------------------


def test_a_failed_kos_check_aborts_the_session_and_marks_the_peer_inside_the_share(failure: Failure) -> None:
    cluster = failure.cluster
    assert failure.error.reason == "protocol" and failure.error.node == "n1"
    assert "KOS check" in str(failure.error)
    assert marks(cluster.node(1), failure.key_id) == {2}
    assert marks(cluster.node(2), failure.key_id) == set(), "party 2's own check of party 1 passed"
    assert not cluster.node(1).store.names("compromised/"), "no separate record any more"


def test_the_failure_is_logged_as_compromised_before_the_abort(failure: Failure) -> None:
    entries = log_of(failure.cluster.node(1))
    (mark,) = [e for e in entries if e.outcome == "compromised"]
    session = [e for e in entries if e.session_id == mark.session_id]
    assert [(e.kind, e.outcome) for e in session] == [("sign", "started"), ("sign", "compromised"), ("sign", "aborted")]
    assert mark.reason == "parties=2" and mark.key_id == failure.key_id


def test_the_marked_pair_is_refused_before_the_certificate_is_spent(failure: Failure) -> None:
    cluster = failure.cluster
    message = refused_unspent(cluster.node(1), cluster.sign_request([1, 2], bytes([1]) * 32), "setup-compromised")
    assert "refresh" in message
    with pytest.raises(ClusterError) as info:
        cluster.sign([1, 2])
    assert info.value.reason == "setup-compromised"


def test_the_other_pair_still_signs(failure: Failure) -> None:
    outcome = failure.cluster.sign([1, 3])
    assert outcome.signers == [1, 3]


def test_the_signer_itself_refuses_the_marked_share(failure: Failure) -> None:
    """The library API needs no node: the mark travels inside the share."""
    cluster, digest = failure.cluster, bytes(32)
    shares = {p: read_key(cluster.node(p).store, failure.key_id)[0] for p in (1, 2, 3)}
    with pytest.raises(UsageError, match=r"parties \[2\] is marked compromised"):
        EcdsaSigner(runner.new_session_id(), shares[1], [1, 2], digest)
    with pytest.raises(UsageError, match="marked compromised"):
        runner.sign_ecdsa(shares, [1, 2], digest)
    signature = runner.sign_ecdsa(shares, [1, 3], digest)
    assert ecdsa.verify(shares[1].group_public_key, digest, signature)  # type: ignore[arg-type]


# -- the attacks on the block ----------------------------------------------------------------------


def test_a_restart_keeps_the_block(failure: Failure) -> None:
    node = failure.cluster.reopen(1)
    refused_unspent(node, failure.cluster.sign_request([1, 2], bytes([2]) * 32), "setup-compromised")


def test_deleting_every_store_object_but_the_key_identity_and_config_does_not_lift_the_block(
    failure: Failure,
) -> None:
    kept = {f"keys/{failure.key_id}", "identity", CONFIG_OBJECT, HEDGE_KEY}

    def delete_the_rest(directory: Path) -> None:
        with SecretStore.open(directory / "store", passphrase=PASS) as store:
            doomed = [name for name in store.names() if name not in kept]
            assert doomed, "there were other objects to delete"
            for name in doomed:
                store.delete(name)
            assert sorted(store.names()) == sorted(kept)

    node = failure.cluster.reopen(1, delete_the_rest)
    refused_unspent(node, failure.cluster.sign_request([1, 2], bytes([3]) * 32), "setup-compromised")


def test_putting_back_the_key_record_from_before_the_failure_does_not_lift_the_block(
    failure: Failure, caplog: pytest.LogCaptureFixture
) -> None:
    def put_back(directory: Path) -> None:
        key_record(directory, failure.key_id).write_bytes(failure.key_record_before)
        with SecretStore.open(directory / "store", passphrase=PASS) as store:
            assert compromised_peers(read_key(store, failure.key_id)[0]) == set(), "the old share has no mark"

    node = failure.cluster.reopen(1, put_back)
    assert marks(node, failure.key_id) == {2}, "the share on disk carries the mark again, from the log"
    assert f"key {failure.key_id} had lost KOS-failure marks" in caplog.text
    refused_unspent(node, failure.cluster.sign_request([1, 2], bytes([4]) * 32), "setup-compromised")


def test_putting_back_the_key_record_while_the_node_runs_does_not_lift_the_block(failure: Failure) -> None:
    node = failure.cluster.node(1)
    key_record(node.directory, failure.key_id).write_bytes(failure.key_record_before)
    assert marks(node, failure.key_id) == set()
    refused_unspent(node, failure.cluster.sign_request([1, 2], bytes([5]) * 32), "setup-compromised")


def test_putting_back_the_log_as_well_lifts_the_block_the_documented_limit(failure: Failure) -> None:
    """The control: with the log from before the failure too, nothing remembers it.

    Any rollback of the whole directory has this limit (docs/nodes.md); what it
    shows is that the log, not some other record, is what keeps the mark.
    """

    def put_back_both(directory: Path) -> None:
        key_record(directory, failure.key_id).write_bytes(failure.key_record_before)
        (directory / "sign.log").write_bytes(failure.log_before)

    node = failure.cluster.reopen(1, put_back_both)
    assert marks(node, failure.key_id) == set()
    assert failure.cluster.sign([1, 2]).signers == [1, 2]


def test_deleting_a_mark_left_by_an_older_version_does_not_lift_the_block(failure: Failure) -> None:
    """The first start of this version over a ``compromised/<key id>`` object written by an older
    one (which logged no ``compromised`` entry and did not mark the share)."""
    cluster = failure.cluster

    def as_an_older_version_left_it(directory: Path) -> None:
        key_record(directory, failure.key_id).write_bytes(failure.key_record_before)
        (directory / "sign.log").write_bytes(failure.log_before)
        with SecretStore.open(directory / "store", passphrase=PASS) as store:
            store.put(f"compromised/{failure.key_id}", cbor2.dumps([2]))

    node = cluster.reopen(1, as_an_older_version_left_it)
    refused_unspent(node, cluster.sign_request([1, 2], bytes([6]) * 32), "setup-compromised")
    node = cluster.reopen(1, lambda directory: shutil.rmtree(directory / "store" / "objects" / "compromised"))
    refused_unspent(node, cluster.sign_request([1, 2], bytes([7]) * 32), "setup-compromised")


# -- only a refresh lifts it ---------------------------------------------------------------------------


def test_a_committed_refresh_clears_the_mark_on_every_node_and_the_pair_signs_again(failure: Failure) -> None:
    cluster = failure.cluster
    cluster.key = cluster.refresh()
    assert all(marks(cluster.node(p), failure.key_id) == set() for p in (1, 2, 3))
    assert cluster.sign([1, 2]).signers == [1, 2]
    node = cluster.reopen(1)
    assert marks(node, failure.key_id) == set(), "the log's mark is older than the refresh: a restart leaves it off"
    assert cluster.sign([1, 2]).signers == [1, 2]


# -- base-OT incidents ---------------------------------------------------------------------------------


def cheated_keygen(cluster: Cluster) -> ClusterError:
    with base_ot_cheat(), pytest.raises(ClusterError) as info:
        cluster.keygen([1, 2, 3])
    return info.value


def test_a_base_ot_abort_is_logged_and_counted_against_the_peer_node(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        error = cheated_keygen(cluster)
        assert error.reason == "protocol" and error.node == "n1"
        assert f"base OT with party {CHEATER} failed: sender's proof of knowledge" in str(error)
        entries = log_of(cluster.node(1))
        (incident,) = [e for e in entries if e.outcome == "incident"]
        assert incident.kind == "keygen" and incident.reason == f"nodes={cluster.node_id(2)}"
        session = [e.outcome for e in entries if e.session_id == incident.session_id]
        assert session == ["started", "incident", "aborted"]
        assert compromise.incidents(cluster.node(1).store) == {cluster.node_id(2): 1}
        assert compromise.incidents(cluster.node(2).store) == {}
        assert compromise.incidents(cluster.node(3).store) == {}
    finally:
        cluster.close()


@pytest.fixture
def over_budget(tmp_path: Path) -> Iterator[Cluster]:
    """A 2-of-3 ECDSA key, then ``SETUP_ABORT_BUDGET`` key generations node 2 made fail at node 1."""
    cluster = Cluster(tmp_path)
    for count in range(1, SETUP_ABORT_BUDGET + 1):
        assert cheated_keygen(cluster).reason == "protocol", "below the budget, node 1 still runs the setup"
        assert compromise.incidents(cluster.node(1).store) == {cluster.node_id(2): count}
    yield cluster
    cluster.close()


def refused_setup(cluster: Cluster, run: Callable[[], Any]) -> ClusterError:
    """``run`` fails on node 1's ``setup-compromised``, before node 1 spent the certificate."""
    spent = len(cluster.node(1).ledger)
    with pytest.raises(ClusterError) as info:
        run()
    assert info.value.reason == "setup-compromised" and info.value.node == "n1", info.value
    assert cluster.node_id(2) in str(info.value)
    assert len(cluster.node(1).ledger) == spent, "the certificate was spent"
    return info.value


def test_past_the_budget_no_ecdsa_key_generation_runs_with_that_peer(over_budget: Cluster) -> None:
    error = refused_setup(over_budget, lambda: over_budget.keygen([1, 2, 3]))
    assert "harbour node incidents --clear" in str(error)


def test_past_the_budget_no_refresh_runs_with_that_peer(over_budget: Cluster) -> None:
    refused_setup(over_budget, over_budget.refresh)


def test_past_the_budget_no_reshare_runs_with_that_peer(over_budget: Cluster) -> None:
    refused_setup(over_budget, lambda: over_budget.reshare([1, 2, 3]))


def test_past_the_budget_a_reshare_that_leaves_that_peer_out_still_runs(over_budget: Cluster) -> None:
    """The way to replace the peer: a reshare among the others, which it neither deals in nor joins."""
    key = over_budget.reshare([1, 3], dealers=[1, 3])
    assert sorted(key.roster) == [1, 3]


def test_past_the_budget_the_suspect_peer_may_still_deal_itself_out_of_the_key(over_budget: Cluster) -> None:
    """A dealer that leaves runs no base OT with anyone: only the new committee's setup is guarded."""
    key = over_budget.reshare([1, 3])  # every live member deals, node 2 included
    assert sorted(key.roster) == [1, 3]


def test_past_the_budget_other_setups_and_signing_still_run(over_budget: Cluster) -> None:
    assert over_budget.keygen([1, 2, 3], FROST).scheme == FROST
    assert over_budget.keygen([1, 3]).scheme == ECDSA
    assert over_budget.sign([1, 2]).signers == [1, 2], "the budget is about setups; the key's setup is intact"


def incidents_command(directory: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["node", "incidents", "--dir", str(directory), *args], env={"HARBOUR_NODE_PASSPHRASE": PASS}
    )


def test_harbour_node_incidents_lists_and_clears_the_count(over_budget: Cluster) -> None:
    cluster, peer = over_budget, over_budget.node_id(2)
    directory = cluster.node(1).directory
    running = incidents_command(directory, "--json")
    assert running.exit_code == 1 and "stop it first" in running.output
    cluster.node(1).close()
    counted = {"incidents": {peer: SETUP_ABORT_BUDGET}, "budget": SETUP_ABORT_BUDGET, "cleared": False}
    listed = incidents_command(directory, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == counted
    other = incidents_command(directory, "--json", "--clear", cluster.node_id(3))
    assert json.loads(other.output) == counted, "another peer's count is not this one"
    cleared = incidents_command(directory, "--json", "--clear", peer)
    assert cleared.exit_code == 0, cleared.output
    assert json.loads(cleared.output) == {"incidents": {}, "budget": SETUP_ABORT_BUDGET, "cleared": True}
    cluster.nodes[0] = NodeService.open(directory, passphrase=PASS, clock=cluster.clock)
    assert cluster.keygen([1, 2, 3]).scheme == ECDSA


def test_deleting_the_incident_count_does_not_lift_the_budget(over_budget: Cluster) -> None:
    """The same attack as on the KOS mark: the node's log still holds every ``incident`` entry."""

    def delete_the_counts(directory: Path) -> None:
        shutil.rmtree(directory / "store" / "objects" / "incidents")

    over_budget.reopen(1, delete_the_counts)
    assert len([e for e in log_of(over_budget.node(1)) if e.outcome == "incident"]) == SETUP_ABORT_BUDGET
    refused_setup(over_budget, lambda: over_budget.keygen([1, 2, 3]))


@pytest.fixture(scope="module")
def stopped_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    authority = approval.AuthorityKey.generate()
    directory = tmp_path_factory.mktemp("incidents") / "n"
    init_node(
        directory, name="n", listen="127.0.0.1:7500", authorities=[authority.public_bytes], passphrase=PASS, kdf_n=MIN_N
    )
    return directory


@pytest.mark.parametrize(
    "value",
    ["", "node2", "A" * 32, "0" * 31, "0" * 33, "g" * 32, "../" + "0" * 29, " " + "0" * 32],
    ids=["empty", "name", "uppercase", "short", "long", "not-hex", "path", "space"],
)
def test_a_bad_clear_value_is_refused(stopped_node: Path, value: str) -> None:
    result = incidents_command(stopped_node, "--clear", value)
    assert result.exit_code == 2, result.output
    assert "32 lowercase hex digits" in result.output


def test_clearing_a_peer_without_a_count_changes_nothing(stopped_node: Path) -> None:
    result = incidents_command(stopped_node, "--json", "--clear", "0" * 32)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"incidents": {}, "budget": SETUP_ABORT_BUDGET, "cleared": False}
