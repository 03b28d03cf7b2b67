"""An in-memory driver for whole protocol sessions: tests, benchmarks and the CLI.

It plays the network: broadcasts go to every other party, point-to-point
envelopes to their recipient, in FIFO order. An optional ``intercept`` hook sees
every envelope in flight and may replace or drop it, which is how the tests play
a malicious party or a tampering relay.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.group import RandomBytes
from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc.ecdsa_record import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_setup import mark_compromised
from harbour.mpc.ecdsa_sign import SetupCompromised
from harbour.mpc.envelope import Envelope, Party, UsageError
from harbour.mpc.hd import CHAIN_CODE, derive_share
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage, group_by_name, shares_from_dealer
from harbour.mpc.refresh import RefreshParty
from harbour.mpc.repair import RepairParty
from harbour.mpc.reshare import ReshareParty
from harbour.mpc.schemes import Scheme, Signature, UnknownScheme, scheme_by_name, scheme_of
from harbour.mpc.schemes import setup_session_id as setup_session_id

T = TypeVar("T")
Intercept = Callable[[Envelope, int], Envelope | None]
"""``(envelope, destination) -> envelope to deliver, or None to drop it``."""


@dataclass
class RunStats:
    envelopes: int = 0
    bytes: int = 0


def run(
    parties: Mapping[int, Party[T]], intercept: Intercept | None = None, stats: RunStats | None = None
) -> dict[int, T]:
    """Drive ``parties`` to completion; a ProtocolAbort from any party propagates."""
    queue: deque[tuple[Envelope, int]] = deque()

    def post(envs: Sequence[Envelope]) -> None:
        for env in envs:
            if stats is not None:
                stats.envelopes += 1
                stats.bytes += len(env.encode())
            targets = [env.recipient] if env.recipient is not None else [i for i in parties if i != env.sender]
            for dest in targets:
                queue.append((env, dest))

    for party in parties.values():
        post(party.start())
    while queue:
        env, dest = queue.popleft()
        delivered = intercept(env, dest) if intercept else env
        if delivered is None or dest not in parties:
            continue
        post(parties[dest].receive(delivered))
    unfinished = [i for i, p in parties.items() if not p.done]
    if unfinished:
        raise RuntimeError(f"parties {unfinished} did not finish: messages were lost")
    return {i: p.result for i, p in parties.items()}


def new_session_id() -> bytes:
    return secrets.token_bytes(32)


def keygen(
    scheme: str,
    threshold: int,
    n: int,
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Run a full key generation with parties 1..n in this process.

    For a scheme with a pairwise setup (threshold ECDSA) that is the DKG followed
    by the setup, under a session id derived from the DKG's.
    """
    sid = new_session_id() if session_id is None else session_id
    ids = list(range(1, n + 1))
    kind = scheme_by_name(scheme)
    shares = run({i: kind.dkg_party(sid, i, threshold, ids, rng=rng) for i in ids}, intercept, stats)
    return _then_setup(kind, shares, setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)


def _then_setup(
    kind: Scheme,
    shares: Mapping[int, KeyShare],
    session_id: bytes | None,
    *,
    intercept: Intercept | None,
    stats: RunStats | None,
    rng: RandomBytes,
) -> dict[int, KeyShare]:
    """``shares`` made ready to sign: through the scheme's pairwise setup if it has one."""
    if not kind.has_setup:
        return dict(shares)
    sid = new_session_id() if session_id is None else session_id
    parties = {i: kind.setup_party(sid, share, rng=rng) for i, share in shares.items()}
    return run(parties, intercept, stats)


def ecdsa_setup(
    shares: Mapping[int, KeyShare],
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Run the DKLs23 pairwise setup on ECDSA key shares (after a DKG, a refresh or a repair)."""
    return _then_setup(scheme_by_name(ECDSA_SCHEME), shares, session_id, intercept=intercept, stats=stats, rng=rng)


def sign_any(
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    message: bytes,
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    **options: Any,
) -> Signature:
    """Run one signing session among ``signers`` with the protocol of the shares' scheme.

    Every signer's result must agree. ``options`` go to the scheme's signer
    (``rng``, and FROST's ``merkle_root`` and ``tweak``). A threshold-ECDSA
    session that fails a KOS check raises :class:`SetupCompromised`, after which
    the caller stores :func:`record_compromise`'s shares in place of its own.
    """
    return _sign(None, shares, signers, message, session_id=session_id, intercept=intercept, stats=stats, **options)


def _sign(
    kind: Scheme | None,
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    message: bytes,
    *,
    session_id: bytes | None,
    intercept: Intercept | None,
    stats: RunStats | None,
    **options: Any,
) -> Signature:
    """A signing session with ``kind``'s signers (they refuse a share of another scheme), or each share's own."""
    sid = new_session_id() if session_id is None else session_id
    missing = [i for i in signers if i not in shares]
    if missing:
        raise UsageError(f"no key share for signers {missing}")
    parties = {i: (kind or scheme_of(shares[i])).signer(sid, shares[i], signers, message, **options) for i in signers}
    results = run(parties, intercept, stats)
    signatures = set(results.values())
    if len(signatures) != 1:
        raise RuntimeError("signers produced different signatures")
    signature = signatures.pop()
    assert isinstance(signature, bytes | EcdsaSignature)
    return signature


def sign(
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    message: bytes,
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    **options: Any,
) -> bytes:
    """:func:`sign_any` for a FROST key, whose signature is its encoded bytes."""
    # A recoverable signature is an object with its recovery id, not bytes.
    if any(i in shares and scheme_of(shares[i]).recoverable for i in signers):
        raise UsageError("ECDSA key shares sign with sign_ecdsa()")
    signature = sign_any(shares, signers, message, session_id=session_id, intercept=intercept, stats=stats, **options)
    assert isinstance(signature, bytes)
    return signature


def sign_ecdsa(
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    digest: bytes,
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> EcdsaSignature:
    """:func:`sign_any` for a threshold-ECDSA key: one DKLs23 session over a 32-byte digest.

    A share marked compromised with another signer is refused (``UsageError``).
    """
    dkls23 = scheme_by_name(ECDSA_SCHEME)
    signature = _sign(dkls23, shares, signers, digest, session_id=session_id, intercept=intercept, stats=stats, rng=rng)
    assert isinstance(signature, EcdsaSignature)
    return signature


def record_compromise(shares: Mapping[int, KeyShare], abort: SetupCompromised) -> dict[int, KeyShare]:
    """The shares to store after a failed KOS check: each side of every failed pair marks the other.

    The signer whose check failed marks the peers it names, and each of them marks
    it, so a session needing that pair is refused whichever share starts it. If
    the abort does not say which signer it came from, each named peer is marked
    against every other party in ``shares`` (and they against it). Only changed
    shares are returned; give the underived shares, not child shares of a path.
    """
    if abort.party is not None:
        pairs = {(abort.party, p) for p in abort.peers}
    else:
        pairs = {(i, p) for p in abort.peers for i in shares if i != p}
    marks: dict[int, set[int]] = {}
    for a, b in pairs:
        marks.setdefault(a, set()).add(b)
        marks.setdefault(b, set()).add(a)
    missing = sorted(set(marks) - set(shares))
    if missing:
        raise UsageError(f"the shares of parties {missing} are needed to record the compromised setup")
    return {i: mark_compromised(shares[i], peers) for i, peers in sorted(marks.items())}


# -- key lifecycle ---------------------------------------------------------------------


def _public_metadata(share: KeyShare) -> dict[str, bytes]:
    """What a key carries from committee to committee: the chain code, not protocol state."""
    return {CHAIN_CODE: share.extensions[CHAIN_CODE]} if CHAIN_CODE in share.extensions else {}


def refresh(
    shares: Mapping[int, KeyShare],
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Proactive refresh of every share (and a new pairwise setup for a scheme that has one)."""
    sid = new_session_id() if session_id is None else session_id
    first = next(iter(shares.values()))
    if set(shares) != set(first.parties):
        raise UsageError(f"a refresh needs every party of the key: {list(first.parties)}")
    if first.threshold == 1:
        raise UsageError("a 1-of-n key cannot be refreshed: every share is the whole key")
    parties = {i: RefreshParty(sid, share, rng=rng) for i, share in shares.items()}
    new = run(parties, intercept, stats)
    return _then_setup(scheme_of(first), new, setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)


def reshare(
    shares: Mapping[int, KeyShare],
    new_threshold: int,
    new_parties: Sequence[int],
    *,
    public: PublicKeyPackage | None = None,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Move a key to ``new_parties`` with ``new_threshold``; ``shares`` are the dealers' (at least t)."""
    sid = new_session_id() if session_id is None else session_id
    first = next(iter(shares.values()))
    public = first.public if public is None else public
    metadata = _public_metadata(first)
    dealers = sorted(shares)
    ids = sorted(set(dealers) | set(new_parties))
    parties = {
        i: ReshareParty(
            sid, i, public, dealers, new_threshold, new_parties, share=shares.get(i), metadata=metadata, rng=rng
        )
        for i in ids
    }
    results = run(parties, intercept, stats)
    new = {i: r.share for i, r in results.items() if r.share is not None}
    return _then_setup(scheme_of(public), new, setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)


def repair(
    helpers: Mapping[int, KeyShare],
    lost: int,
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> KeyShare:
    """Rebuild party ``lost``'s share from ``t`` helpers' shares without reconstructing the key.

    For an ECDSA key the repaired share has no pairwise setup yet: run
    :func:`ecdsa_setup` over the whole committee afterwards.
    """
    sid = new_session_id() if session_id is None else session_id
    first = next(iter(helpers.values()))
    public = first.public
    metadata = _public_metadata(first)
    parties = {
        i: RepairParty(sid, i, public, sorted(helpers), lost, share=helpers.get(i), metadata=metadata, rng=rng)
        for i in [*sorted(helpers), lost]
    }
    results = run(parties, intercept, stats)
    repaired = results[lost].share
    assert repaired is not None
    return repaired


def import_key(
    scheme: str,
    private_key: int,
    threshold: int,
    n: int,
    *,
    chain_code: bytes | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Split an existing private key into a t-of-n key (RFC 9591 appendix C), e.g. to move a wallet into custody.

    The caller's process sees the whole key once; everything after signs without it.
    """
    try:
        kind = scheme_by_name(scheme)
    except UnknownScheme:
        raise UsageError(f"unknown scheme {scheme!r}") from None
    curve = kind.curve
    dealt = trusted_dealer_keygen(group_by_name(curve), private_key, threshold, n, rng)
    code = rng(32) if chain_code is None else chain_code
    if len(code) != 32:
        raise UsageError("a chain code is 32 bytes")
    shares = {
        i: dataclasses.replace(share, extensions={CHAIN_CODE: code})
        for i, share in shares_from_dealer(scheme, curve, dealt).items()
    }
    return _then_setup(kind, shares, None, intercept=None, stats=stats, rng=rng)


def derived_shares(shares: Mapping[int, KeyShare], path: str | None) -> dict[int, KeyShare]:
    """The shares that sign under the BIP-32 child at ``path`` (unchanged for ``None`` or ``m``)."""
    if path is None or path.strip() == "m":
        return dict(shares)
    return {i: derive_share(share, path) for i, share in shares.items()}
