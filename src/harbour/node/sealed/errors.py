"""Why a sealed message was refused, and whose fault it was.

One error for the whole package, with a ``reason`` code, because the node acts on
every refusal alike (the session ends) and reports the reason: the parser, the
checks of the opened message and the replay guard all raise it.
"""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "too-large",
    "malformed",
    "version",
    "not-for-us",
    "unknown-session",
    "unknown-sender",
    "no-key",
    "bad-signature",
    "decryption-failed",
    "not-public",
    "mismatch",
    "replay",
    "out-of-order",
]


class SealedError(ValueError):
    """A sealed message refused, and why.

    ``reason`` is for code: ``"too-large"``, ``"malformed"`` (truncated, not canonical,
    wrong fields or types), ``"version"``, ``"not-for-us"``, ``"unknown-session"``,
    ``"unknown-sender"``, ``"no-key"`` (sealed before the sender's hello arrived),
    ``"bad-signature"``, ``"decryption-failed"``, ``"not-public"`` (a secret round sent
    unencrypted), ``"mismatch"`` (header, roster and inner envelope disagree),
    ``"replay"``, ``"out-of-order"``.

    ``culprit`` is the sender's node id when the fault is in content the sender
    authenticated (so it is the sender's doing, not the relay's); otherwise ``None``,
    since an unauthenticated message may come from anyone.
    """

    def __init__(self, reason: Reason, message: str, culprit: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.culprit = culprit
