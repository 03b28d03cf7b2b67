"""Shared tools for the attack tests: a network that keeps going after an abort,
interceptors that play a malicious party, and catalogues of malformed encodings;
and :func:`wait_until`, the one way a test waits for something another thread or
process does."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

import cbor2
import nacl.bindings as sodium
import nacl.signing
from coincurve import PublicKeyXOnly
from eth_keys.backends.native.main import NativeECCBackend
from eth_keys.main import KeyAPI

from harbour.chains.ethereum import address_from_public_key, keccak256
from harbour.crypto import ecdsa
from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import Group, Point
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.crypto.secp256k1 import P as SECP_P
from harbour.mpc import runner
from harbour.mpc.ciphersuite import FROST_TAPROOT, suite_by_name
from harbour.mpc.dkg import DkgParty
from harbour.mpc.ecdsa_setup import EXTENSION as ECDSA_SETUP_EXTENSION
from harbour.mpc.ecdsa_setup import EcdsaSetupParty
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, encode_payload
from harbour.mpc.frost_party import FrostSigner, signing_public_key
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare
from harbour.mpc.runner import Intercept

SCHEMES = ["frost-secp256k1", "frost-ed25519", "frost-taproot"]
T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float = 30.0, *, message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout`` s.

    The interval starts at 5 ms and doubles up to 100 ms: a condition that is
    already true costs one call, and a long wait does not spin. The failure says
    what was waited for (``message``) and the predicate's last answer.
    """
    deadline = time.monotonic() + timeout
    interval = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or repr(predicate)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last answer: {value!r})")
        time.sleep(interval)
        interval = min(interval * 2, 0.1)


GROUPS = [SECP256K1, ED25519]
ED_P = 2**255 - 19


def session() -> bytes:
    return runner.new_session_id()


# -- a network that records every party's fate ---------------------------------------


@dataclass
class Outcome:
    """What each party ended with: a result, an abort, or neither (still waiting)."""

    parties: Mapping[int, Party[Any]]
    results: dict[int, Any] = field(default_factory=dict)
    aborts: dict[int, ProtocolAbort] = field(default_factory=dict)

    def culprits(self, i: int) -> frozenset[int]:
        assert i in self.aborts, f"party {i} did not abort (results: {sorted(self.results)})"
        return self.aborts[i].culprits


def drive(parties: Mapping[int, Party[Any]], intercept: Intercept | None = None) -> Outcome:
    """Like ``runner.run``, but an abort stops only the party that raised it.

    The runner stops at the first abort; attack tests need to see that *every*
    honest party refuses, and whom each one blames.
    """
    out = Outcome(parties)
    queue: deque[tuple[Envelope, int]] = deque()

    def post(envs: Sequence[Envelope]) -> None:
        for env in envs:
            targets = [env.recipient] if env.recipient is not None else [i for i in parties if i != env.sender]
            queue.extend((env, dest) for dest in targets)

    for i, party in parties.items():
        try:
            post(party.start())
        except ProtocolAbort as abort:
            out.aborts[i] = abort
    while queue:
        env, dest = queue.popleft()
        delivered = intercept(env, dest) if intercept else env
        if delivered is None or dest not in parties or dest in out.aborts:
            continue
        try:
            post(parties[dest].receive(delivered))
        except ProtocolAbort as abort:
            out.aborts[dest] = abort
    out.results = {i: p.result for i, p in parties.items() if p.done}
    return out


# -- parties ----------------------------------------------------------------------------


def dkg_parties(scheme: str, t: int, n: int, session_id: bytes | None = None) -> dict[int, DkgParty]:
    sid = session() if session_id is None else session_id
    ids = list(range(1, n + 1))
    return {i: DkgParty(suite_by_name(scheme), sid, i, t, ids) for i in ids}


def frost_signers(
    shares: Mapping[int, KeyShare],
    signers: Sequence[int],
    message: bytes,
    session_id: bytes | None = None,
    **options: Any,
) -> dict[int, FrostSigner]:
    sid = session() if session_id is None else session_id
    return {i: FrostSigner(sid, shares[i], signers, message, **options) for i in signers}


@cache
def cached_keygen(scheme: str, t: int, n: int) -> Mapping[int, KeyShare]:
    """One honest DKG per (scheme, t, n) for the whole test run."""
    return runner.keygen(scheme, t, n)


def ecdsa_signers(
    shares: Mapping[int, KeyShare], signers: Sequence[int], digest: bytes, session_id: bytes | None = None
) -> dict[int, EcdsaSigner]:
    sid = session() if session_id is None else session_id
    return {i: EcdsaSigner(sid, shares[i], signers, digest) for i in signers}


def ecdsa_setup_parties(shares: Mapping[int, KeyShare], session_id: bytes | None = None) -> dict[int, EcdsaSetupParty]:
    sid = session() if session_id is None else session_id
    return {i: EcdsaSetupParty(sid, share) for i, share in shares.items()}


def without_ecdsa_setup(share: KeyShare) -> KeyShare:
    """An ECDSA share as the DKG leaves it, before the pairwise setup."""
    extensions = {k: v for k, v in share.extensions.items() if k != ECDSA_SETUP_EXTENSION}
    return dataclasses.replace(share, extensions=extensions)


# -- interceptors: a malicious party or a tampering relay ------------------------------

Mutation = Callable[[dict[str, Any], Envelope, int], dict[str, Any]]


def rewrite(
    rnd: int,
    sender: int,
    mutate: Mutation,
    to: int | Sequence[int] | None = None,
) -> Intercept:
    """Rewrite the payload of round ``rnd`` from ``sender`` (to ``to``, default everyone).

    ``mutate`` gets the decoded payload (a fresh dict), the envelope and the
    destination; its result is re-encoded canonically, so the only thing wrong
    with the delivered message is what ``mutate`` changed.
    """
    targets = None if to is None else {to} if isinstance(to, int) else set(to)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round != rnd or env.sender != sender or (targets is not None and dest not in targets):
            return env
        body = dict(cbor2.loads(env.payload))
        return dataclasses.replace(env, payload=encode_payload(mutate(body, env, dest)))

    return intercept


def set_field(name: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body[name] = value
        return body

    return mutate


def drop_field(name: str) -> Mutation:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        del body[name]
        return body

    return mutate


def flip_byte(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def flip_field(name: str, index: int = 0, mask: int = 0x01) -> Mutation:
    """XOR ``mask`` into one byte of a bytes field (``index`` may be negative)."""

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body[name] = flip_byte(body[name], index, mask)
        return body

    return mutate


def recorder(log: list[tuple[Envelope, int]]) -> Intercept:
    def intercept(env: Envelope, dest: int) -> Envelope | None:
        log.append((env, dest))
        return env

    return intercept


# -- malformed encodings ----------------------------------------------------------------


def encode_scalar_raw(group: Group, value: int) -> bytes:
    """The scalar encoding of ``value`` with no reduction (so ``order`` stays ``order``)."""
    return value.to_bytes(32, "big" if group is SECP256K1 else "little")


def _ed(y: int, negative_x: bool = False) -> bytes:
    return (y | (int(negative_x) << 255)).to_bytes(32, "little")


def _ed_off_curve_y() -> int:
    """The smallest y for which (y^2 - 1) / (d y^2 + 1) is not a square: no x exists."""
    d = -121665 * pow(121666, -1, ED_P) % ED_P
    y = 2
    while True:
        x2 = (y * y - 1) * pow(d * y * y + 1, -1, ED_P) % ED_P
        if x2 != 0 and pow(x2, (ED_P - 1) // 2, ED_P) != 1:
            return y
        y += 1


def _secp_off_curve_x() -> int:
    """The smallest x for which x^3 + 7 is not a square mod p: no y exists."""
    x = 1
    while pow((x**3 + 7) % SECP_P, (SECP_P - 1) // 2, SECP_P) == 1:
        x += 1
    return x


ED_IDENTITY = _ed(1)
ED_SMALL_ORDER = {
    "order-1-identity": ED_IDENTITY,
    "order-2": _ed(ED_P - 1),
    "order-4": _ed(0),
    "order-4-negative-x": _ed(0, negative_x=True),
    "order-8-a": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "order-8-b": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    "order-8-c": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order-8-d": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
}
_G_ED = ED25519.generator().encode()
_G_SECP = SECP256K1.generator().encode()

ED_BAD_POINTS: dict[str, bytes] = {
    "empty": b"",
    "too-short": _G_ED[:31],
    "too-long": _G_ED + b"\x00",
    "identity-negative-zero-x": _ed(1, negative_x=True),
    "off-curve-y": _ed(_ed_off_curve_y()),
    "non-canonical-y-alias-of-order-4": _ed(ED_P),
    "non-canonical-y-alias-of-identity": _ed(ED_P + 1),
    "non-canonical-y-all-ones": _ed(2**255 - 1),
    "torsion-component": sodium.crypto_core_ed25519_add(_G_ED, ED_SMALL_ORDER["order-8-a"]),
    **ED_SMALL_ORDER,
}

SECP_BAD_POINTS: dict[str, bytes] = {
    "empty": b"",
    "identity-single-zero-byte": b"\x00",
    "identity-zero-prefix": b"\x00" * 33,
    "prefix-04-compressed-length": b"\x04" + _G_SECP[1:],
    "prefix-05": b"\x05" + _G_SECP[1:],
    "hybrid-prefix-06": b"\x06" + _G_SECP[1:],
    "hybrid-prefix-07": b"\x07" + _G_SECP[1:],
    "uncompressed": SECP256K1.generator().public_key.format(compressed=False),  # type: ignore[attr-defined]
    "too-short": _G_SECP[:32],
    "too-long": _G_SECP + b"\x00",
    "off-curve-x": b"\x02" + _secp_off_curve_x().to_bytes(32, "big"),
    "non-canonical-x-equals-p": b"\x02" + SECP_P.to_bytes(32, "big"),
    "non-canonical-x-alias-of-valid-x": b"\x02" + (1 + SECP_P).to_bytes(32, "big"),
    "non-canonical-x-all-ones": b"\x03" + b"\xff" * 32,
}

BAD_POINTS: dict[str, dict[str, bytes]] = {"secp256k1": SECP_BAD_POINTS, "ed25519": ED_BAD_POINTS}

# The ones that matter most inside protocol messages, for every curve.
PROTOCOL_BAD_POINTS: dict[str, list[str]] = {
    "secp256k1": ["identity-zero-prefix", "off-curve-x", "non-canonical-x-alias-of-valid-x", "uncompressed"],
    "ed25519": [
        "order-1-identity",
        "off-curve-y",
        "non-canonical-y-alias-of-identity",
        "order-8-a",
        "torsion-component",
    ],
}


def bad_point_cases(schemes: Sequence[str] = SCHEMES) -> list[tuple[str, str]]:
    return [(s, k) for s in schemes for k in PROTOCOL_BAD_POINTS[suite_by_name(s).group.name]]


# CBOR semantic tags that cbor2 decodes into Python objects; none belongs in a payload.
TAGGED_VALUES = {
    "datetime-text": b"\xc0" + cbor2.dumps("2020-01-01T00:00:00Z"),
    "datetime-naive": b"\xc0" + cbor2.dumps("2020-01-01T00:00:00"),
    "datetime-epoch": b"\xc1\x00",
    "bignum": b"\xc2\x41\x01",
    "decimal-fraction": b"\xc4\x82\x01\x01",
    "bigfloat-huge-exponent": b"\xc5\x82\x1b\x7f\xff\xff\xff\xff\xff\xff\xff\x01",
    "undefined": b"\xf7",
    "nan": b"\xf9\x7e\x00",
    "set": b"\xd9\x01\x02\x82\x01\x02",
    "ip-address": b"\xd9\x01\x04\x44\x7f\x00\x00\x01",
    "uuid-malformed": b"\xd8\x25\x41\x00",
    "regex-malformed": b"\xd8\x23\x61(",
    "string-reference": b"\xd9\x01\x00\x82\x63abc\xd8\x19\x00",
    "shared-value-cycle": b"\xd8\x1c\x81\xd8\x1d\x00",
    "mime-message": b"\xd8\x24\x60",
}


# -- key lifecycle (refresh, reshare, repair, import, HD) -------------------------------

ECDSA_SCHEME = "ecdsa-secp256k1"
ALL_SCHEMES = [*SCHEMES, ECDSA_SCHEME]
ETH_KEYS = KeyAPI(NativeECCBackend)
LIFECYCLE_MESSAGE = b"move 250,000 HKD of tokenised deposits to cold storage"


def lifecycle_bad_point_cases(schemes: Sequence[str] = ALL_SCHEMES) -> list[tuple[str, str]]:
    """``bad_point_cases`` for every scheme, threshold ECDSA included."""
    return [(s, k) for s in schemes for k in PROTOCOL_BAD_POINTS[SCHEME_CURVES[s]]]


def assert_aborted(outcome: Outcome, parties: Iterable[int], culprits: Iterable[int], match: str | None = None) -> None:
    """Every party in ``parties`` aborted naming exactly ``culprits`` and produced no result."""
    for i in parties:
        assert outcome.culprits(i) == frozenset(culprits), outcome.aborts[i]
        if match is not None:
            assert match in outcome.aborts[i].reason, outcome.aborts[i].reason
        assert i not in outcome.results


def assert_signs(shares: Mapping[int, KeyShare], signers: Sequence[int], public_key: Point | None = None) -> None:
    """``signers`` sign, and the signature verifies under an implementation other than
    harbour's wherever one exists (eth-keys, libsodium, libsecp256k1's BIP-340).

    ``public_key`` is the key the signature must verify under (the shares' group key
    by default); for Taproot that is the internal key, and the signature is checked
    against its BIP-341 output key.
    """
    share = shares[signers[0]]
    pk = share.group_public_key if public_key is None else public_key
    assert all(shares[i].group_public_key == pk for i in signers)
    if share.scheme == ECDSA_SCHEME:
        assert isinstance(pk, Secp256k1Point)
        digest = keccak256(LIFECYCLE_MESSAGE)
        sig = runner.sign_ecdsa(shares, signers, digest)
        assert ecdsa.verify(pk, digest, sig)
        recovered = ETH_KEYS.Signature(vrs=(sig.recovery_id, sig.r, sig.s)).recover_public_key_from_msg_hash(digest)
        assert recovered.to_checksum_address() == address_from_public_key(pk)
        return
    signature = runner.sign(shares, signers, LIFECYCLE_MESSAGE)
    if share.scheme == "frost-ed25519":
        nacl.signing.VerifyKey(pk.encode()).verify(LIFECYCLE_MESSAGE, signature)
    elif share.scheme == "frost-taproot":
        output = signing_public_key(FROST_TAPROOT, pk)
        assert isinstance(output, Secp256k1Point)
        assert PublicKeyXOnly(output.x_bytes).verify(signature, LIFECYCLE_MESSAGE)
    else:
        # FROST(secp256k1, SHA-256) has no implementation outside the signing code to check against.
        assert suite_by_name(share.scheme).verify(pk, LIFECYCLE_MESSAGE, signature)


def documented_pair_key(
    shared: bytes, body_a: Mapping[str, Any], body_b: Mapping[str, Any], phase: bytes, sender: str, recipient: str
) -> bytes:
    """A session pair key of one phase and direction, derived from node/handshake.py's documentation alone.

    ``shared`` is the X25519 result of the two ephemeral keys; ``body_a`` and
    ``body_b`` the pair's decoded hello bodies. salt = Transcript("harbour/session-key/v1")
    over the session, the roster digest and (node id, ephemeral key) of the lower then
    the higher node id; PRK = HKDF-SHA256 with info "harbour/session-key/pair"; the key
    = HKDF-Expand of the PRK with info = Transcript("harbour/session-key/direction/v1")
    over phase, from, to.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

    from harbour.crypto.hashing import Transcript

    lo, hi = sorted((body_a, body_b), key=lambda body: str(body["from"]))
    salt = (
        Transcript("harbour/session-key/v1")
        .append("session", lo["session_id"])
        .append("roster", lo["roster"])
        .append("lo", lo["from"])
        .append("lo_epk", lo["epk"])
        .append("hi", hi["from"])
        .append("hi_epk", hi["epk"])
        .digest()
    )
    prk = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"harbour/session-key/pair").derive(shared)
    info = (
        Transcript("harbour/session-key/direction/v1")
        .append("phase", phase)
        .append("from", sender)
        .append("to", recipient)
        .digest()
    )
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def pem_needs_password(data: bytes) -> bool:
    """Whether a PEM private key file is encrypted: loading it without a password is refused as such.

    Asked of the key itself rather than of its header line, so a file that only looks
    encrypted (a header over a clear key) does not pass.
    """
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_private_key(data, None)
    except TypeError:
        return True
    return False
