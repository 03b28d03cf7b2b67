"""Hierarchical deterministic keys for threshold keys: BIP-32 public derivation.

BIP-32 ("Hierarchical Deterministic Wallets"), "Public parent key -> public
child key" (CKDpub): for a non-hardened index ``i < 2^31``,
``I = HMAC-SHA512(c_par, ser_P(K_par) || ser_32(i))``, ``K_i = K_par + I_L·G``,
``c_i = I_R``. Because the child key is the parent plus a public tweak, a
threshold key signs under a child key with no extra interaction: every party
adds the summed tweak ``τ`` to its share (``Σ λ_i (x_i + τ) = x + τ`` since the
Lagrange coefficients sum to 1) and every verification share moves by ``τ·G``
(:func:`tweak_share`). Hardened derivation needs the parent private key, which
no one holds, so it is refused.

The chain code is fixed at key generation (mpc/dkg.py derives it from the DKG
transcript; an imported key brings its own or draws one) and kept in the key
share's ``chain_code`` extension. :func:`xpub` exports the group key as a BIP-32
extended public key that any wallet can derive from.

Ed25519 keys have no BIP-32. For them this module defines an additive scheme
with the same shape (documented in docs/lifecycle.md):
``I = HMAC-SHA512(c_par, "harbour-ed25519-hd" || A_par || ser_32(i))``,
``A_i = A_par + (I_L mod L)·B``, ``c_i = I_R``; indices below 2^31 only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace

from harbour.crypto.group import Group, Point
from harbour.mpc.keyshare import KeyShare

HARDENED = 1 << 31
CHAIN_CODE = "chain_code"
XPUB_VERSION = bytes.fromhex("0488b21e")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class DerivationError(ValueError):
    """A path that cannot be derived (hardened, malformed) or an invalid child."""


@dataclass(frozen=True)
class Derived:
    public_key: Point
    chain_code: bytes
    tweak: int
    depth: int
    parent_fingerprint: bytes
    index: int


def parse_path(path: str) -> list[int]:
    """``m/0/7`` -> ``[0, 7]``; hardened steps (``'`` or ``h``) are refused."""
    parts = path.strip().split("/")
    if parts[0] != "m":
        raise DerivationError(f"a derivation path starts with 'm', got {path!r}")
    out = []
    for part in parts[1:]:
        if part.endswith(("'", "h", "H")):
            raise DerivationError(
                f"hardened step {part!r}: hardened derivation needs the private key, which no party holds"
            )
        if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0") or len(part) > 10:
            raise DerivationError(f"path step {part!r} is not a decimal index")
        index = int(part)
        if index >= HARDENED:
            raise DerivationError(f"index {index} is hardened (>= 2^31)")
        out.append(index)
    if len(out) > 255:
        raise DerivationError("a BIP-32 path has at most 255 steps")
    return out


def _hash160(data: bytes) -> bytes:
    # pycryptodome's RIPEMD-160: OpenSSL 3 builds may leave it out of hashlib. Loaded
    # here, on first use, so that a signer node does not load pycryptodome's cffi
    # bindings at start.
    from Crypto.Hash import RIPEMD160

    return bytes(RIPEMD160.new(hashlib.sha256(data).digest()).digest())


def derive(group: Group, public_key: Point, chain_code: bytes, path: str | list[int]) -> Derived:
    """The child public key, chain code and total tweak at ``path``."""
    if len(chain_code) != 32:
        raise DerivationError("a chain code is 32 bytes")
    indices = parse_path(path) if isinstance(path, str) else list(path)
    key, code, tweak = public_key, chain_code, 0
    fingerprint, index = bytes(4), 0
    for index in indices:
        if not 0 <= index < HARDENED:
            raise DerivationError(f"index {index} is not a non-hardened index")
        if group.name == "secp256k1":
            data = key.encode() + index.to_bytes(4, "big")
        else:
            data = b"harbour-ed25519-hd" + key.encode() + index.to_bytes(4, "big")
        digest = hmac.new(code, data, hashlib.sha512).digest()
        il = int.from_bytes(digest[:32], "big")
        if group.name == "secp256k1":
            if il >= group.order:
                raise DerivationError(f"index {index} gives an invalid child (I_L >= n); use the next index")
        else:
            il %= group.order
        child = key + group.base_mul(il)
        if child.is_identity():
            raise DerivationError(f"index {index} gives the identity; use the next index")
        fingerprint = (
            _hash160(key.encode())[:4] if group.name == "secp256k1" else hashlib.sha256(key.encode()).digest()[:4]
        )
        key, code, tweak = child, digest[32:], (tweak + il) % group.order
    return Derived(key, code, tweak, len(indices), fingerprint, index)


def tweak_share(share: KeyShare, tweak: int) -> KeyShare:
    """The key share of the child key ``K + τ·G``: same parties, shifted shares."""
    g = share.group
    tweak %= g.order
    if tweak == 0:
        return share
    shift = g.base_mul(tweak)
    return replace(
        share,
        secret_share=(share.secret_share + tweak) % g.order,
        group_public_key=share.group_public_key + shift,
        verification_shares={i: y + shift for i, y in share.verification_shares.items()},
    )


def derive_share(share: KeyShare, path: str) -> KeyShare:
    """The key share that signs under the child key at ``path``."""
    code = share.extensions.get(CHAIN_CODE)
    if code is None:
        raise DerivationError("this key has no chain code: it cannot derive child keys")
    derived = derive(share.group, share.group_public_key, code, path)
    child = tweak_share(share, derived.tweak)
    return replace(child, extensions={**child.extensions, CHAIN_CODE: derived.chain_code})


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def xpub(public_key: Point, chain_code: bytes, derived: Derived | None = None) -> str:
    """BIP-32 serialisation (mainnet ``xpub``) of a secp256k1 key, or of a derived child."""
    if len(chain_code) != 32:
        raise DerivationError("a chain code is 32 bytes")
    if derived is None:
        depth, parent, index, key, code = 0, bytes(4), 0, public_key, chain_code
    else:
        depth, parent, index = derived.depth, derived.parent_fingerprint, derived.index
        key, code = derived.public_key, derived.chain_code
    encoded = key.encode()
    if len(encoded) != 33:
        raise DerivationError("xpub is defined for secp256k1 keys only")
    return _base58check(XPUB_VERSION + bytes([depth]) + parent + index.to_bytes(4, "big") + code + encoded)
