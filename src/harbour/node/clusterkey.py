"""What a coordinator knows of a key, and keeps between runs: its public data and which node is which party.

The record holds nothing secret (the shares stay on the nodes), so it is kept as
plain JSON under the coordinator's state directory, one file per key, where an
operator can read it. It changes only when a key ceremony commits
(node/ceremonies.py) or a node's identity rotates (node/coordinator.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harbour.crypto.group import Point
from harbour.mpc.keyshare import PublicKeyPackage
from harbour.mpc.schemes import Signature
from harbour.node import rpc
from harbour.node.driving import ClusterError
from harbour.node.identity import NodeDescriptor
from harbour.util.files import write_atomic


@dataclass
class ClusterKey:
    """What the coordinator knows of a key: public data and which node is which party."""

    key_id: str
    public: PublicKeyPackage
    roster: dict[int, NodeDescriptor]
    chain_code: bytes = b""
    org: str = ""
    """The organisation the key belongs to (its genesis hash, hex), or empty: every admin certificate names it."""

    @property
    def scheme(self) -> str:
        return self.public.scheme

    @property
    def threshold(self) -> int:
        return self.public.threshold

    def to_json(self) -> str:
        return json.dumps(
            {
                "key_id": self.key_id,
                "public": rpc.encode_public(self.public).hex(),
                "roster": {str(p): json.loads(d.to_json()) for p, d in sorted(self.roster.items())},
                "chain_code": self.chain_code.hex(),
                "org": self.org,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterKey:
        try:
            obj = json.loads(text)
            roster = {int(p): NodeDescriptor.from_json(json.dumps(d)) for p, d in obj["roster"].items()}
            public = rpc.decode_public(bytes.fromhex(obj["public"]))
            org = obj.get("org", "")  # a record from before organisations: none
            if not isinstance(org, str):
                raise ValueError("org must be text")
            return cls(rpc.check_key_id(obj["key_id"]), public, roster, bytes.fromhex(obj["chain_code"]), org)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClusterError("bad-key-file", f"key file is malformed: {exc}") from exc


@dataclass
class SignOutcome:
    key: ClusterKey
    signers: list[int]
    message: bytes
    path: str
    signature: Signature
    group_public_key: Point
    """The key the signature verifies under (the child key at ``path``)."""


def save_key(state_dir: Path | None, key: ClusterKey) -> None:
    """Record ``key`` under ``state_dir`` (nothing without one: a coordinator that keeps no state)."""
    if state_dir is None:
        return
    directory = state_dir / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{key.key_id}.json", (key.to_json() + "\n").encode(), mode=0o644)


def load_key(state_dir: Path | None, key_id: str) -> ClusterKey:
    rpc.check_key_id(key_id)
    if state_dir is None:
        raise ClusterError("unknown-key", "no coordinator state directory is configured")
    path = state_dir / "keys" / f"{key_id}.json"
    try:
        return ClusterKey.from_json(path.read_text())
    except OSError as exc:
        raise ClusterError("unknown-key", f"no record of key {key_id} in {state_dir}") from exc


def recorded_keys(state_dir: Path | None) -> list[str]:
    """The ids of the keys recorded under ``state_dir``, in order."""
    if state_dir is None:
        return []
    return [path.stem for path in sorted((state_dir / "keys").glob("*.json"))]
