"""Real signer-node processes on loopback, for the cluster tests and the benchmark.

:class:`Cluster` creates an approval authority and ``n`` node directories, starts
each node as its own ``harbour node run`` process on a free loopback port, and
waits until every one answers. Nodes can be killed and restarted. Certificates are
issued by :meth:`Cluster.certify`, and :meth:`Cluster.coordinator` gives a
coordinator that reaches the nodes over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harbour.node import approval
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.localnet import LocalNode, create_nodes, free_port, start_all

Node = LocalNode
__all__ = ["PASSPHRASE", "Cluster", "Node", "free_port"]

PASSPHRASE = "correct horse battery staple"


class Cluster:
    def __init__(
        self,
        root: Path,
        n: int,
        *,
        pkcs11: tuple[str, str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        node_options: dict[str, Any] | None = None,
    ) -> None:
        """``pkcs11`` = (module, token label, pin): keep every node's KEK on that token (one key label each).

        ``node_options`` go to every node's ``init_node`` (``require_evidence``, ``approvers``, ...).
        """
        self.root = root
        self.authority = approval.AuthorityKey.generate()
        self.nodes: list[Node] = create_nodes(
            root,
            n,
            [self.authority.public_bytes],
            passphrase=None if pkcs11 else PASSPHRASE,
            pkcs11=pkcs11,
            extra_env=extra_env,
            node_options=node_options,
        )

    @property
    def descriptors(self) -> list[NodeDescriptor]:
        return [n.descriptor for n in self.nodes]

    def start(self) -> None:
        start_all(self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def coordinator(self, **options: Any) -> Coordinator:
        return Coordinator(**options)

    # -- certificates

    def certify(
        self, kind: str, key_id: str = "", *, expires_in: int = 300, now: int | None = None, **what: Any
    ) -> bytes:
        now = int(time.time()) if now is None else now
        return approval.issue(self.authority, kind=kind, key_id=key_id, now=now, expires_in=expires_in, **what)

    def sign_cert(
        self, key: ClusterKey, message: bytes, *, path: str = "m", signers: Sequence[int] | None = None, **options: Any
    ) -> bytes:
        """A sign certificate for ``signers`` (by default the key's first t parties)."""
        chosen = sorted(signers) if signers is not None else sorted(key.roster)[: key.threshold]
        digests = [approval.approved_digest(message)]
        return self.certify("sign", key.key_id, path=path, digests=digests, signers=chosen, **options)

    def sign_certs(self, key: ClusterKey, message: bytes, *, path: str = "m") -> Callable[[list[int]], bytes]:
        """A certificate for whichever signers the coordinator picks (as the custody service issues them)."""
        return lambda signers: self.sign_cert(key, message, path=path, signers=signers)

    def keygen_cert(
        self, scheme: str, threshold: int, nodes: Sequence[NodeDescriptor], key_id: str = "", *, org: str = ""
    ) -> bytes:
        params = admin_params("keygen", scheme=scheme, threshold=threshold, nodes=nodes, org=org)
        return self.certify("keygen", key_id, params=params)

    def refresh_cert(self, key: ClusterKey) -> bytes:
        return self.certify("refresh", key.key_id, params=admin_params("refresh", key=key))

    def reshare_cert(self, key: ClusterKey, nodes: Sequence[NodeDescriptor], threshold: int) -> bytes:
        params = admin_params("reshare", threshold=threshold, nodes=nodes, key=key)
        return self.certify("reshare", key.key_id, params=params)
