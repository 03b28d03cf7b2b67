"""What a node must never forget about its threshold-ECDSA peers: failed checks that leak.

Two kinds of record (docs/ecdsa.md, "leakage budget"):

- **A failed KOS check** in signing (:class:`~harbour.mpc.ecdsa_sign.SetupCompromised`):
  a cheating peer may be learning one bit of this node's long-term OT correlation
  per check, so the pair must never sign again until a refresh replaces the setup.
  The mark lives inside the key share itself
  (:func:`~harbour.mpc.ecdsa_setup.mark_compromised`), which the store encrypts and
  authenticates with the rest of the key record: it cannot be deleted on its own,
  and :class:`~harbour.mpc.ecdsa_sign.EcdsaSigner` refuses a marked share. Each mark is
  also written to the hash-chained signing log (outcome ``compromised``), and at
  start the node puts back into the share any mark the log holds since the key's
  last committed admin session, so an older copy of the key record restored on its
  own does not lift it either. Only a committed refresh, reshare or key generation
  of the key clears the marks (its new share has a fresh setup).
- **A base-OT abort** a peer caused in a setup (:class:`~harbour.mpc.ecdsa_setup.BaseOtAbort`):
  each may tell a cheating peer one choice bit of a setup it then discards, and a
  setup that completes after ``k`` such attempts leaks ``k`` bits with probability
  ``2^-k``. The node counts them per peer node (``incidents/<node id>``, and the log's
  ``incident`` entries) and refuses threshold-ECDSA setups with a peer that reached
  :data:`~harbour.mpc.ecdsa_setup.SETUP_ABORT_BUDGET`, until an operator clears the
  count (``harbour node incidents --clear``) after investigating, or the peer's
  identity is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import cbor2

from harbour.mpc.ecdsa_setup import SETUP_ABORT_BUDGET, compromised_peers, mark_compromised
from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.node import rpc
from harbour.node.identity import NodeDescriptor, is_node_id
from harbour.node.signlog import Entry
from harbour.node.staging import read_key
from harbour.node.store import SecretStore

ADMIN_KINDS: Final = ("keygen", "refresh", "reshare")
_PARTIES = re.compile(r"parties=([0-9]{1,3}(?:,[0-9]{1,3})*)")
_NODES = re.compile(r"nodes=([0-9a-f]{32}(?:,[0-9a-f]{32})*)")
_CLEARED = re.compile(r"cleared=([0-9a-f]{32})")
LEGACY_PREFIX: Final = "compromised/"


def parties_reason(parties: Iterable[int]) -> str:
    """The ``reason`` of a ``compromised`` log entry: ``parties=2,3``."""
    return "parties=" + ",".join(str(p) for p in sorted(parties))


def nodes_reason(nodes: Iterable[str]) -> str:
    """The ``reason`` of an ``incident`` log entry: ``nodes=<node id>,...``."""
    return "nodes=" + ",".join(sorted(nodes))


def cleared_reason(node: str) -> str:
    """The ``reason`` of the ``incident`` log entry an operator's clear leaves: ``cleared=<node id>``."""
    return f"cleared={node}"


def incidents_from_log(entries: Iterable[Entry]) -> dict[str, int]:
    """Peer node id -> base-OT aborts the log records since that peer's count was last cleared."""
    counts: dict[str, int] = {}
    for entry in entries:
        if entry.outcome != "incident":
            continue
        cleared = _CLEARED.fullmatch(entry.reason)
        if cleared is not None:
            counts.pop(cleared.group(1), None)
            continue
        found = _NODES.fullmatch(entry.reason)
        if found is not None:
            for node in found.group(1).split(","):
                counts[node] = counts.get(node, 0) + 1
    return counts


def heal_incidents(store: SecretStore, counts: dict[str, int]) -> list[str]:
    """Raise every stored count to what the log records (a deleted or older ``incidents/`` object)."""
    stored = incidents(store)
    healed = []
    for node, count in counts.items():
        if count > stored.get(node, 0):
            store.put(f"incidents/{node}", cbor2.dumps(count))
            healed.append(node)
    return healed


def marks_from_log(entries: Iterable[Entry]) -> dict[str, set[int]]:
    """Key id -> parties whose setup with this node failed a KOS check since the key's last committed admin session."""
    marks: dict[str, set[int]] = {}
    for entry in entries:
        if entry.outcome == "compromised":
            found = _PARTIES.fullmatch(entry.reason)
            if found is not None:
                marks.setdefault(entry.key_id, set()).update(int(p) for p in found.group(1).split(","))
        elif entry.outcome == "committed" and entry.kind in ADMIN_KINDS:
            marks.pop(entry.key_id, None)
    return {key_id: parties for key_id, parties in marks.items() if parties}


def heal(store: SecretStore, marks: dict[str, set[int]]) -> list[str]:
    """Put the log's marks back into every key share that lacks them; the key ids changed.

    A key record older than the log (restored from a copy, or written before the
    crash that interrupted :func:`mark`) would otherwise have lost its marks.
    """
    healed = []
    for key_id, parties in marks.items():
        if not store.exists(f"keys/{key_id}"):
            continue
        share, roster = read_key(store, key_id)
        missing = {p for p in parties if p in share.parties and p != share.identifier} - compromised_peers(share)
        if missing:
            write_share(store, key_id, mark_compromised(share, missing), roster)
            healed.append(key_id)
    return healed


def write_share(store: SecretStore, key_id: str, share: KeyShare, roster: dict[int, NodeDescriptor]) -> None:
    """The key record (``keys/<key id>``), as :func:`~harbour.node.staging.read_key` reads it."""
    store.put(f"keys/{key_id}", cbor2.dumps({"share": share.serialize(), "roster": rpc.roster_value(roster)}))


def compromised(store: SecretStore, key_id: str) -> set[int]:
    """The parties whose pairwise setup with this node is marked for ``key_id`` (none for other schemes)."""
    share, _ = read_key(store, key_id)
    try:
        marked = set(compromised_peers(share))
    except KeyShareError:
        marked = set()
    legacy = f"{LEGACY_PREFIX}{key_id}"  # written by earlier versions; moved into the share at start
    if store.exists(legacy):
        marked |= legacy_marks(store, key_id)
    return marked


def legacy_marks(store: SecretStore, key_id: str) -> set[int]:
    """The parties an earlier version's ``compromised/<key id>`` object names."""
    raw = cbor2.loads(store.get(f"{LEGACY_PREFIX}{key_id}"))
    return {p for p in raw if type(p) is int} if isinstance(raw, list) else set()


def mark(store: SecretStore, key_id: str, peers: Iterable[int]) -> set[int]:
    """Mark ``peers`` in the stored share of ``key_id``; the parties now marked."""
    share, roster = read_key(store, key_id)
    updated = mark_compromised(share, peers)
    write_share(store, key_id, updated, roster)
    return set(compromised_peers(updated))


# -- base-OT incidents ---------------------------------------------------------------------------------


def incidents(store: SecretStore) -> dict[str, int]:
    """Peer node id -> base-OT aborts it caused in this node's setups (since last cleared)."""
    out = {}
    for name in store.names("incidents/"):
        node = name.removeprefix("incidents/")
        count = cbor2.loads(store.get(name))
        if is_node_id(node) and type(count) is int and count > 0:
            out[node] = count
    return out


def add_incident(store: SecretStore, node: str) -> int:
    count = incidents(store).get(node, 0) + 1
    store.put(f"incidents/{node}", cbor2.dumps(count))
    return count


def clear_incidents(store: SecretStore, node: str) -> bool:
    name = f"incidents/{node}"
    if not store.exists(name):
        return False
    store.delete(name)
    return True


def over_budget(store: SecretStore, nodes: Iterable[str]) -> dict[str, int]:
    """Those of ``nodes`` that reached :data:`SETUP_ABORT_BUDGET`, with their counts."""
    counts = incidents(store)
    return {node: counts[node] for node in nodes if counts.get(node, 0) >= SETUP_ABORT_BUDGET}
