"""Signer nodes as local processes: a cluster on one machine, for benchmarks, tests and trials.

Each node is created in its own directory (:func:`harbour.node.config.init_node`)
and served by its own ``python -m harbour.node`` process (what ``harbour node run``
does, without the CLI) on a free loopback port, as in production, only closer
together. A :class:`LocalNode` starts, waits for, kills
(SIGKILL, like a crash) and stops its process; its output goes to
``<name>.log`` beside the node's directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harbour.node.config import init_node
from harbour.node.hsm import Pkcs11Config
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N

START_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalNode:
    directory: Path
    descriptor: NodeDescriptor
    env: dict[str, str]
    on_token: bool = False
    """Whether its store's KEK is on a PKCS#11 token (which the cluster's nodes share)."""
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.name}.log"

    def start(self, wait: bool = True) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"node {self.name} is running already")
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
            [sys.executable, "-m", "harbour.node", "--dir", str(self.directory)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.process is not None
        url = self.descriptor.url + "/v1/descriptor"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.process.returncode}: {self.tail()}")
            with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=1.0) as answer:  # noqa: S310
                # The node answering must be this one, not another process on a reused port.
                if answer.status == 200 and json.loads(answer.read()).get("node_id") == self.descriptor.node_id:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not answer within {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time of the process so far (Linux), or None."""
        if self.process is None:
            return None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

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
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def create_nodes(
    root: Path,
    n: int,
    authorities: list[bytes],
    *,
    passphrase: str | None = None,
    pkcs11: tuple[str, str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    node_options: Mapping[str, Any] | None = None,
    counters: bool = True,
) -> list[LocalNode]:
    """``n`` new node directories ``root/node1..n`` on free loopback ports (not started).

    With ``passphrase`` the stores use the cheapest scrypt cost the store accepts
    (these are throw-away nodes); with ``pkcs11 = (module, token label, pin)`` each
    node keeps its KEK on that token under its own label. ``node_options`` are
    passed to :func:`init_node` (``approvers``, ``min_approvals``, ``require_evidence``).
    With ``counters`` each node gets a rollback counter (on the token, or in the file
    ``root/nodeI.counter`` beside its directory), so any of them can serve as a cold node.
    """
    if (passphrase is None) == (pkcs11 is None):
        raise ValueError("give a passphrase or a PKCS#11 token")
    nodes = []
    taken: set[int] = set()
    for i in range(1, n + 1):
        env = {**os.environ, **(extra_env or {})}
        port = free_port()
        while port in taken:  # the OS may hand the same free port out twice in a row
            port = free_port()
        taken.add(port)
        directory, name, listen = root / f"node{i}", f"node{i}", f"127.0.0.1:{port}"
        if pkcs11 is None:
            assert passphrase is not None
            env["HARBOUR_NODE_PASSPHRASE"] = passphrase
            descriptor = init_node(
                directory,
                name=name,
                listen=listen,
                authorities=authorities,
                passphrase=passphrase,
                kdf_n=MIN_N,
                counter={"kind": "file", "path": str((root / f"{name}.counter").absolute())} if counters else None,
                **(node_options or {}),
            )
        else:
            module, label, pin = pkcs11
            env["HARBOUR_NODE_PIN"] = pin
            config = Pkcs11Config(module, label, f"kek-{name}")
            descriptor = init_node(
                directory,
                name=name,
                listen=listen,
                authorities=authorities,
                pkcs11=config,
                pin=pin,
                counter={"kind": "pkcs11"} if counters else None,
                **(node_options or {}),
            )
        nodes.append(LocalNode(directory, descriptor, env, on_token=pkcs11 is not None))
    return nodes


def start_all(nodes: list[LocalNode]) -> None:
    """Start every node and wait until each answers.

    Nodes are started together, except nodes whose keys are on a token: here they
    share one SoftHSM2 token, whose objects are files, and a node that initialises
    the library while another writes its rollback counter there can find the token
    unreadable (a general error, or no token at all). They start one after another.
    """
    if any(node.on_token for node in nodes):
        for node in nodes:
            node.start()
        return
    for node in nodes:
        node.start(wait=False)
    for node in nodes:
        node.wait_ready()


@contextlib.contextmanager
def running(nodes: list[LocalNode]) -> Iterator[list[LocalNode]]:
    """Start every node (:func:`start_all`); every one is stopped on leaving, whatever happened."""
    try:
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
