"""Staged key shares: what an admin session produced, kept aside until the whole committee has it.

A keygen, refresh or reshare ends with every member holding a new share. If some
members switched to their new share and others did not, fewer than t shares of
one generation could remain and the key would be lost. So a node never replaces
a share as soon as its session ends. It *stages* the new share
(``pending/<session>`` in its store) and answers with an acknowledgement: its
signature over the session, key id and the new public key package's fingerprint.
It *commits* (replaces the old share) only when shown an acknowledgement from
every member of the new committee.

A member that leaves the key (a reshare dealer not in the new committee) deletes
its share on commit, and it needs more proof: a *receipt* from every new member,
signed once that member has committed. Committing twice returns the same
receipt, so a coordinator that crashed half-way can always finish.

A staged result is never thrown away on the coordinator's word, since once other
members have committed it may be the only copy of this node's part. Discarding it
takes a certificate from the authority, of the session's kind, for its key, with
``params = {"discard": <session id in hex>}``.

While a key has a staged result, no other admin session on it starts: two
refreshes committed on different nodes would also leave no t shares of one
generation.

A staged result also says which organisation the key belongs to (none, for a key
of none): the commit records that binding before it writes the share, so no crash
leaves a key of an organisation unbound, and a member leaving the key drops it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import cbor2

from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.node import approval, nonces, rpc, signlog
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.store import SecretStore, StoreError


class Refusal(Exception):
    """A request the node refuses; ``reason`` goes into the response."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_PARSED: OrderedDict[bytes, tuple[KeyShare, dict[int, NodeDescriptor]]] = OrderedDict()
_PARSED_MAX = 16
"""Recently parsed key records, by the SHA-256 of their decrypted bytes.

Parsing a record checks every point of the key package and decodes the
threshold-ECDSA setup: a few milliseconds a signing session would otherwise spend
at every start. Keyed by the record's exact bytes, an entry can never stand for a
record that changed; a share is no more exposed here than in the session using it."""


def read_key(store: SecretStore, key_id: str) -> tuple[KeyShare, dict[int, NodeDescriptor]]:
    """The node's share of ``key_id`` and the key's roster (party -> node)."""
    name = f"keys/{key_id}"
    if not store.exists(name):
        raise Refusal("unknown-key", f"this node holds no share of key {key_id!r}")
    try:
        data = store.get(name)
        digest = hashlib.sha256(data).digest()
        cached = _PARSED.get(digest)
        if cached is not None:
            _PARSED.move_to_end(digest)
            return cached[0], dict(cached[1])
        obj = cbor2.loads(data)
        share = KeyShare.deserialize(obj["share"])
        roster = rpc.parse_roster(obj["roster"])
    except (StoreError, KeyShareError, rpc.RequestError, KeyError, TypeError) as exc:
        raise Refusal("damaged-key", f"the stored share of key {key_id!r} is unusable: {exc}") from exc
    _PARSED[digest] = (share, dict(roster))
    while len(_PARSED) > _PARSED_MAX:
        _PARSED.popitem(last=False)
    return share, roster


class Staging:
    """The staged results of one node (in its encrypted store)."""

    def __init__(
        self,
        store: SecretStore,
        identity: NodeIdentity,
        log: signlog.SignLog,
        trusted: Mapping[str, Any],
        ledger: nonces.NonceLedger,
        now: Callable[[], int],
        bind: Callable[[str, str | None], None],
    ) -> None:
        self.bind = bind
        """Records which organisation a key belongs to (:meth:`harbour.node.orgs.registry.Organisations.bind`)."""
        self.store = store
        self.identity = identity
        self.log = log
        self.trusted = trusted
        self.ledger = ledger
        self.now = now

    def _load(self, sid: bytes) -> dict[str, Any]:
        name = f"pending/{sid.hex()}"
        if not self.store.exists(name):
            raise Refusal("unknown-session", f"no staged result of session {sid.hex()} on this node")
        obj = cbor2.loads(self.store.get(name))
        assert isinstance(obj, dict)
        return obj

    def staged_for(self, key_id: str) -> str | None:
        """The name of a staged result for ``key_id``, if there is one."""
        for name in self.store.names("pending/"):
            if cbor2.loads(self.store.get(name)).get("key_id") == key_id:
                return name
        return None

    def stage(
        self,
        sid: bytes,
        kind: str,
        key_id: str,
        base: bytes,
        roster: Mapping[int, NodeDescriptor],
        share: KeyShare | None,
        *,
        org: str | None = None,
    ) -> None:
        """Keep ``share`` (None: this node leaves the key) aside; ``base`` is the fingerprint it replaces.

        ``org`` is the organisation the key belongs to (None: none).
        """
        pending = {
            "key_id": key_id,
            "kind": kind,
            "base": base,
            "roster": rpc.roster_value(roster),
            "share": share.serialize() if share is not None else b"",
            "org": org or "",
        }
        self.store.put(f"pending/{sid.hex()}", cbor2.dumps(pending, canonical=True))

    def result(self, sid: bytes) -> dict[str, Any]:
        """The staged result's public part and this node's acknowledgement of it.

        Also after the commit (from the commit record), so that members still holding
        the staged share can be given every acknowledgement they need.
        """
        done = f"committed/{sid.hex()}"
        if self.store.exists(done):
            record = cbor2.loads(self.store.get(done))
            key_id, fingerprint = record["key_id"], record["fingerprint"]
            public, code = record["public"], record["chain_code"]
            if not public:  # this node left the key: it acknowledges nothing
                return {"key_id": key_id, "public": b"", "fingerprint": b"", "ack": b"", "chain_code": b""}
        else:
            pending = self._load(sid)
            key_id = pending["key_id"]
            if not pending["share"]:
                return {"key_id": key_id, "public": b"", "fingerprint": b"", "ack": b"", "chain_code": b""}
            share = KeyShare.deserialize(pending["share"])
            fingerprint = share.public.fingerprint()
            public, code = rpc.encode_public(share.public), share.extensions.get(CHAIN_CODE, b"")
        return {
            "key_id": key_id,
            "public": public,
            "fingerprint": fingerprint,
            "ack": self.identity.sign(rpc.ack_message(sid, key_id, fingerprint)),
            "chain_code": code,
        }

    def is_committed(self, sid: bytes) -> bool:
        return self.store.exists(f"committed/{sid.hex()}")

    def roster(self, sid: bytes) -> list[list[Any]]:
        """The new committee of a staged (or committed) session, as ``[[party, descriptor], ...]``."""
        done = f"committed/{sid.hex()}"
        obj = cbor2.loads(self.store.get(done)) if self.store.exists(done) else self._load(sid)
        roster = obj["roster"]
        assert isinstance(roster, list)
        return roster

    def discard(self, sid: bytes, certificate: bytes) -> None:
        pending = self._load(sid)
        try:
            approval.verify(
                certificate,
                self.trusted,
                now=self.now(),
                kind=pending["kind"],
                key_id=pending["key_id"],
                path="m",
                params={"discard": sid.hex()},
                ledger=self.ledger,
            )
        except approval.ApprovalError as exc:
            self._log_discard(
                sid, pending, certificate, "refused", f"discard refused ({exc.reason}): {exc}"[: signlog.MAX_REASON]
            )
            raise Refusal(
                "approval", f"a staged result is discarded only with the authority's certificate ({exc.reason}): {exc}"
            ) from exc
        self.store.delete(f"pending/{sid.hex()}")
        self._log_discard(
            sid, pending, certificate, "aborted", "staged result discarded on the authority's certificate"
        )

    def _log_discard(
        self, sid: bytes, pending: Mapping[str, Any], certificate: bytes, outcome: str, reason: str
    ) -> None:
        """The sign log's line for a discard request, refused or done: both name the staged session and its key."""
        self.log.append(
            time=self.now(),
            kind=pending["kind"],
            session_id=sid,
            key_id=pending["key_id"],
            path="m",
            outcome=outcome,
            reason=reason,
            certificate=certificate,
        )

    def commit(
        self, sid: bytes, fingerprint: bytes, acks: Mapping[str, bytes], receipts: Mapping[str, bytes]
    ) -> tuple[str, bytes]:
        """Replace the key's share by the staged one; returns ``(key_id, receipt)``."""
        done = f"committed/{sid.hex()}"
        if self.store.exists(done):
            record = cbor2.loads(self.store.get(done))
            if record["fingerprint"] != fingerprint:
                raise Refusal("commit", "this session was committed with another fingerprint")
            if self.store.exists(f"pending/{sid.hex()}"):  # a crash after the record, before the clean-up
                self._finish_commit(sid, cbor2.loads(self.store.get(f"pending/{sid.hex()}")), record["key_id"])
            return record["key_id"], self._receipt(sid, record["key_id"], fingerprint)
        pending = self._load(sid)
        key_id = pending["key_id"]
        roster = rpc.parse_roster(pending["roster"])
        share = KeyShare.deserialize(pending["share"]) if pending["share"] else None
        if share is not None and share.public.fingerprint() != fingerprint:
            raise Refusal("commit", "the fingerprint to commit is not the one of the share this node staged")
        _check_signatures(roster, acks, rpc.ack_message(sid, key_id, fingerprint), "acknowledgement")
        if share is None:
            _check_signatures(roster, receipts, rpc.receipt_message(sid, key_id, fingerprint), "commit receipt")
        key_name = f"keys/{key_id}"
        if not self._already_replaced(key_id, fingerprint, share):
            self._check_base(key_id, pending["base"], share)
            if share is None:
                self.store.delete(key_name)
            else:
                # The binding first: a crash between the two leaves a binding without a key, never a key without it.
                self.bind(key_id, pending.get("org") or None)
                self.store.put(key_name, cbor2.dumps({"share": share.serialize(), "roster": pending["roster"]}))
        record = {
            "key_id": key_id,
            "fingerprint": fingerprint,
            "roster": pending["roster"],
            "public": b"",
            "chain_code": b"",
        }
        if share is not None:
            record.update(public=rpc.encode_public(share.public), chain_code=share.extensions.get(CHAIN_CODE, b""))
        self.store.put(done, cbor2.dumps(record))
        self._finish_commit(sid, pending, key_id)
        return key_id, self._receipt(sid, key_id, fingerprint)

    def _already_replaced(self, key_id: str, fingerprint: bytes, share: KeyShare | None) -> bool:
        """Whether a commit interrupted by a crash already replaced (or deleted) the share: then resume."""
        exists = self.store.exists(f"keys/{key_id}")
        if share is None:
            return not exists
        return exists and read_key(self.store, key_id)[0].public.fingerprint() == fingerprint

    def _finish_commit(self, sid: bytes, pending: dict[str, Any], key_id: str) -> None:
        if not pending["share"]:
            self.bind(key_id, None)  # this node left the key: it belongs to nothing here any more
        self.store.delete(f"compromised/{key_id}")
        self.store.delete(f"pending/{sid.hex()}")
        self.log.append(
            time=self.now(),
            kind=pending["kind"],
            session_id=sid,
            key_id=key_id,
            path="m",
            outcome="committed",
            reason="" if pending["share"] else "this node left the committee; its share was deleted",
        )

    def _check_base(self, key_id: str, base: bytes, share: KeyShare | None) -> None:
        """The stored key is still the one the session started from (none, for a new key)."""
        exists = self.store.exists(f"keys/{key_id}")
        if not base:
            if exists:
                raise Refusal("commit", f"a key named {key_id!r} exists already; a new key never replaces it")
            return
        if not exists:
            if share is None:
                raise Refusal("commit", f"key {key_id} is not held here any more")
            return  # a member new to the key
        current, _ = read_key(self.store, key_id)
        if current.public.fingerprint() != base:
            raise Refusal("commit", f"key {key_id} changed since this session started; refusing to commit")

    def _receipt(self, sid: bytes, key_id: str, fingerprint: bytes) -> bytes:
        return self.identity.sign(rpc.receipt_message(sid, key_id, fingerprint))


def _check_signatures(
    roster: Mapping[int, NodeDescriptor], signatures: Mapping[str, bytes], message: bytes, what: str
) -> None:
    for descriptor in roster.values():
        sig = signatures.get(descriptor.node_id)
        try:
            if sig is None:
                raise ValueError("missing")
            descriptor.sign_public_key().verify(sig, message)
        except Exception as exc:
            raise Refusal("commit", f"no valid {what} from node {descriptor.name} ({descriptor.node_id[:16]})") from exc
