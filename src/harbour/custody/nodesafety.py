"""Whether a signer node is safe to serve this custody service: it must not sign on the service's word alone.

The service holds the approval authority's key, so a node that signs with some
key on the authority's certificate alone (a key of no organisation, judged by
nothing but that certificate) would let whoever breaks into the service make such
a key and sign with it. ``harbour custody init --nodes`` and ``harbour custody
add-node`` therefore ask each node for its status (signed by its identity key
over a fresh challenge, :mod:`harbour.node.status`, so a relay cannot answer for
it) and refuse a node that does not serve organisations only, unless it insists
on evidence from approvers of its own list (``require_evidence``, an approver
list and ``min_approvals >= 1``). A node that does not answer is refused too: it
must be running to show how it is configured.

This is a check of the operator's configuration, not the protection itself: the
node's own refusal is (:mod:`harbour.node.planning`). A node whose operator lies
about its settings is outside what any question to it can show.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harbour.node import approval
from harbour.node.driving import ClusterError, ask_statuses
from harbour.node.identity import NodeDescriptor
from harbour.node.status import NodeStatus

STATUS_TIMEOUT: Final = 5.0
RETRY_INTERVAL: Final = 0.25


def _unreachable(answer: NodeStatus | ClusterError) -> bool:
    return isinstance(answer, ClusterError) and answer.reason == "unreachable"


@dataclass(frozen=True)
class Verdict:
    """One node's answer (or why there is none) and what it means for the service."""

    descriptor: NodeDescriptor
    path: Path
    """The descriptor file; its directory is usually the node's own."""
    status: NodeStatus | None
    error: str | None

    @property
    def reachable(self) -> bool:
        return self.status is not None

    @property
    def safe(self) -> bool:
        return self.status is not None and not self.status.settings.signs_on_authority_alone

    def trusts(self, authority_public: bytes) -> bool:
        """Whether the node obeys this authority (otherwise it refuses every certificate the service issues)."""
        authority_id = approval.authority_id_of(approval.public_key_from_raw(authority_public))
        return self.status is not None and authority_id in self.status.settings.authorities

    def problem(self) -> tuple[str, str] | None:
        """None for a safe node; else what is wrong with it and how to fix it (the command to run)."""
        name, directory = self.descriptor.name, self.path.parent
        if self.status is None:
            return (
                f"node {name} ({self.descriptor.url}) gave no status, so it cannot show that it does not sign on "
                f"this service's word alone: {self.error}",
                f"start it (harbour node run --dir {directory}) and run this command again",
            )
        if self.safe:
            return None
        return (
            f"node {name} ({self.descriptor.url}) would sign on this service's word alone: it makes and signs "
            "keys of no organisation on the approval authority's certificate, and this service holds that key",
            f"stop it, run `harbour node approvers --dir {directory} --organisations-only` (with "
            "HARBOUR_NODE_PASSPHRASE or HARBOUR_NODE_PIN set) and start it again; a new node: "
            "`harbour node init ... --organisations-only`",
        )


def examine(
    paths: Sequence[Path],
    descriptors: Sequence[NodeDescriptor],
    timeout: float = STATUS_TIMEOUT,
    *,
    wait: float = 0.0,
    tls: ssl.SSLContext | None = None,
) -> list[Verdict]:
    """Ask every node for its signed status, all at once; one verdict per node, in order.

    A node that cannot be reached is asked again for up to ``wait`` seconds: one
    started a moment ago (``harbour node run ... &``) may not listen yet.
    """
    deadline = time.monotonic() + wait
    answers = ask_statuses(descriptors, timeout, tls)
    while time.monotonic() < deadline:
        silent = [d for d in descriptors if _unreachable(answers[d.node_id])]
        if not silent:
            break
        time.sleep(RETRY_INTERVAL)
        answers.update(ask_statuses(silent, timeout, tls))
    verdicts = []
    for path, descriptor in zip(paths, descriptors, strict=True):
        answer = answers[descriptor.node_id]
        if isinstance(answer, ClusterError):
            verdicts.append(Verdict(descriptor, path, None, str(answer)))
        else:
            verdicts.append(Verdict(descriptor, path, answer, None))
    return verdicts
