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
from harbour.crypto.hashing import Transcript
from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc.ciphersuite import FROST_SECP256K1, suite_by_name
from harbour.mpc.dkg import DkgParty
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_setup import EcdsaSetupParty, mark_compromised
from harbour.mpc.ecdsa_sign import EcdsaSigner, SetupCompromised
from harbour.mpc.envelope import Envelope, Party, UsageError
from harbour.mpc.frost_party import FrostSigner
from harbour.mpc.hd import CHAIN_CODE, derive_share
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, PublicKeyPackage, group_by_name, shares_from_dealer
from harbour.mpc.refresh import RefreshParty
from harbour.mpc.repair import RepairParty
from harbour.mpc.reshare import ReshareParty

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

    For threshold ECDSA that is the DKG followed by the DKLs23 pairwise setup
    (:func:`ecdsa_setup`), under a session id derived from the DKG's.
    """
    sid = new_session_id() if session_id is None else session_id
    ids = list(range(1, n + 1))
    if scheme == ECDSA_SCHEME:
        dkg = {i: DkgParty(FROST_SECP256K1, sid, i, threshold, ids, scheme=scheme, rng=rng) for i in ids}
        shares = run(dkg, intercept, stats)
        return ecdsa_setup(shares, session_id=setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)
    suite = suite_by_name(scheme)
    parties = {i: DkgParty(suite, sid, i, threshold, ids, rng=rng) for i in ids}
    return run(parties, intercept, stats)


def setup_session_id(keygen_session_id: bytes) -> bytes:
    """The session id of the ECDSA pairwise setup that follows a DKG."""
    return Transcript("harbour/ecdsa/setup-session").append("dkg-session", keygen_session_id).digest()[:32]


def ecdsa_setup(
    shares: Mapping[int, KeyShare],
    *,
    session_id: bytes | None = None,
    intercept: Intercept | None = None,
    stats: RunStats | None = None,
    rng: RandomBytes = secrets.token_bytes,
) -> dict[int, KeyShare]:
    """Run the DKLs23 pairwise setup on ECDSA key shares (after a DKG or a refresh)."""
    sid = new_session_id() if session_id is None else session_id
    parties = {i: EcdsaSetupParty(sid, share, rng=rng) for i, share in shares.items()}
    return run(parties, intercept, stats)


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
    """Run one FROST signing session among ``signers``; every signer's result must agree."""
    sid = new_session_id() if session_id is None else session_id
    missing = [i for i in signers if i not in shares]
    if missing:
        raise UsageError(f"no key share for signers {missing}")
    if any(shares[i].scheme == ECDSA_SCHEME for i in signers):
        raise UsageError("ECDSA key shares sign with sign_ecdsa()")
    parties = {i: FrostSigner(sid, shares[i], signers, message, **options) for i in signers}
    results = run(parties, intercept, stats)
    signatures = set(results.values())
    if len(signatures) != 1:
        raise RuntimeError("signers produced different signatures")
    return signatures.pop()


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
    """Run one DKLs23 signing session among ``signers`` over a 32-byte digest.

    A share marked compromised with another signer is refused (``UsageError``);
    a failed KOS check raises :class:`SetupCompromised`, after which the caller
    stores :func:`record_compromise`'s shares in place of its own.
    """
    sid = new_session_id() if session_id is None else session_id
    missing = [i for i in signers if i not in shares]
    if missing:
        raise UsageError(f"no key share for signers {missing}")
    parties = {i: EcdsaSigner(sid, shares[i], signers, digest, rng=rng) for i in signers}
    results = run(parties, intercept, stats)
    signatures = set(results.values())
    if len(signatures) != 1:
        raise RuntimeError("signers produced different signatures")
    return signatures.pop()


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
    """Proactive refresh of every share (and, for ECDSA, a new pairwise setup)."""
    sid = new_session_id() if session_id is None else session_id
    first = next(iter(shares.values()))
    if set(shares) != set(first.parties):
        raise UsageError(f"a refresh needs every party of the key: {list(first.parties)}")
    if first.threshold == 1:
        raise UsageError("a 1-of-n key cannot be refreshed: every share is the whole key")
    parties = {i: RefreshParty(sid, share, rng=rng) for i, share in shares.items()}
    new = run(parties, intercept, stats)
    if first.scheme == ECDSA_SCHEME:
        new = ecdsa_setup(new, session_id=setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)
    return new


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
    if public.scheme == ECDSA_SCHEME:
        new = ecdsa_setup(new, session_id=setup_session_id(sid), intercept=intercept, stats=stats, rng=rng)
    return new


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
    if scheme not in SCHEME_CURVES:
        raise UsageError(f"unknown scheme {scheme!r}")
    curve = SCHEME_CURVES[scheme]
    dealt = trusted_dealer_keygen(group_by_name(curve), private_key, threshold, n, rng)
    code = rng(32) if chain_code is None else chain_code
    if len(code) != 32:
        raise UsageError("a chain code is 32 bytes")
    shares = {
        i: dataclasses.replace(share, extensions={CHAIN_CODE: code})
        for i, share in shares_from_dealer(scheme, curve, dealt).items()
    }
    if scheme == ECDSA_SCHEME:
        shares = ecdsa_setup(shares, stats=stats, rng=rng)
    return shares


def derived_shares(shares: Mapping[int, KeyShare], path: str | None) -> dict[int, KeyShare]:
    """The shares that sign under the BIP-32 child at ``path`` (unchanged for ``None`` or ``m``)."""
    if path is None or path.strip() == "m":
        return dict(shares)
    return {i: derive_share(share, path) for i, share in shares.items()}
