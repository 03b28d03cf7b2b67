"""Real signer-node processes on loopback, for the cluster tests and the benchmark.

:class:`Cluster` creates an approval authority and ``n`` node directories, starts
each node as its own ``harbour node run`` process on a free loopback port, and
waits until every one answers. Nodes can be killed and restarted. Certificates are
issued by :meth:`Cluster.certify`, and :meth:`Cluster.coordinator` gives a
coordinator that reaches the nodes over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harbour.node import approval
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.service import init_node
from harbour.node.store import Pkcs11Config

PASSPHRASE = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    directory: Path
    descriptor: NodeDescriptor
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.descriptor.name

    def start(self, wait: bool = True) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harbour.cli.main", "node", "run", "--dir", str(self.directory)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        url = self.descriptor.url + "/v1/descriptor"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise RuntimeError(f"node {self.name} exited with {self.process.returncode}: {err.decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not start within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, exactly like a crash or a pulled plug."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
            assert self.process.stderr is not None
            self.process.stderr.close()


class Cluster:
    def __init__(
        self,
        root: Path,
        n: int,
        *,
        pkcs11: tuple[str, str, str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``pkcs11`` = (module, token label, pin): keep every node's KEK on that token (one key label each)."""
        self.root = root
        self.authority = approval.AuthorityKey.generate()
        self.nodes: list[Node] = []
        base_env = {**os.environ, **(extra_env or {})}
        for i in range(1, n + 1):
            directory = root / f"node{i}"
            port = free_port()
            env = dict(base_env)
            if pkcs11 is None:
                env["HARBOUR_NODE_PASSPHRASE"] = PASSPHRASE
                descriptor = init_node(
                    directory,
                    name=f"node{i}",
                    listen=f"127.0.0.1:{port}",
                    authorities=[self.authority.public_bytes],
                    passphrase=PASSPHRASE,
                    kdf_n=MIN_N,
                )
            else:
                module, label, pin = pkcs11
                env["HARBOUR_NODE_PIN"] = pin
                descriptor = init_node(
                    directory,
                    name=f"node{i}",
                    listen=f"127.0.0.1:{port}",
                    authorities=[self.authority.public_bytes],
                    pkcs11=Pkcs11Config(module, label, f"kek-node{i}"),
                    pin=pin,
                )
            self.nodes.append(Node(directory, descriptor, env))

    @property
    def descriptors(self) -> list[NodeDescriptor]:
        return [n.descriptor for n in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()

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

    def sign_cert(self, key: ClusterKey, message: bytes, *, path: str = "m", **options: Any) -> bytes:
        return self.certify("sign", key.key_id, path=path, digests=[approval.approved_digest(message)], **options)

    def keygen_cert(self, scheme: str, threshold: int, nodes: Sequence[NodeDescriptor], key_id: str = "") -> bytes:
        params = admin_params("keygen", scheme=scheme, threshold=threshold, nodes=nodes)
        return self.certify("keygen", key_id, params=params)

    def refresh_cert(self, key: ClusterKey) -> bytes:
        return self.certify("refresh", key.key_id, params={})

    def reshare_cert(self, key: ClusterKey, nodes: Sequence[NodeDescriptor], threshold: int) -> bytes:
        params = admin_params("reshare", threshold=threshold, nodes=nodes, key=key)
        return self.certify("reshare", key.key_id, params=params)
