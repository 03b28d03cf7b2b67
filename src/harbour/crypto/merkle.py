"""Merkle tree hashing with inclusion and consistency proofs (RFC 9162 section 2.1).

The custody audit log is an append-only list of events whose state is summed up
by one tree head: auditors who keep an old head can check that a later one
extends it (a *consistency* proof: nothing was rewritten or removed), and that an
event is in the log (an *inclusion* proof), without trusting the operator. This
module is the hashing and the proofs, on leaf hashes held in memory; where the
leaves live is the caller's business.

Hashing, with SHA-256 (RFC 9162 section 2.1.1):

- the hash of an empty tree is ``SHA-256()``;
- a leaf is ``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``,
  so a leaf can never pass for a node (the second-preimage attack on plain Merkle trees);
- a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``.

A root alone does not fix the tree's size (leaf 0's audit path in a tree of three
leaves also verifies for "size four" against the same root), which is why a tree
head is always signed together with its size.

A log that only appends need not keep its leaves to know its root: the *right
edge* (:func:`frontier_append`, :func:`frontier_root`) holds one subtree root per
set bit of the size, so appending and the new root cost O(log n) hashes.

Proofs follow sections 2.1.3 (``PATH``, and the verification algorithm of 2.1.3.2)
and 2.1.4 (``PROOF``/``SUBPROOF``, and the verification of 2.1.4.2). Verification
returns False on anything malformed (a wrong length, an index out of range) rather
than raising: a proof is input from someone else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_LEN = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` over leaf *hashes* (use :func:`leaf_hash` on the entries first)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return bytes(leaves[0])
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def frontier_append(frontier: Sequence[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The right edge after appending ``leaf`` to a tree of ``size``: O(log n) node hashes.

    A tree of ``size`` leaves is a run of perfect subtrees, one per set bit of ``size``,
    largest first. The new leaf merges with the smallest while they are the same height,
    exactly as the carries of ``size + 1`` ripple.
    """
    edge, node, carry = list(frontier), leaf, size
    while carry & 1:
        node = node_hash(edge.pop(), node)
        carry >>= 1
    edge.append(node)
    return edge


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """``MTH`` of the tree with this right edge: RFC 9162 splits at the largest power of two, so fold from the right."""
    if not frontier:
        return EMPTY_ROOT
    node = frontier[-1]
    for left in reversed(frontier[:-1]):
        node = node_hash(left, node)
    return node


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """``PATH(m, D[n])``: the audit path of leaf ``index`` (0-based) in the tree of ``leaves``."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of {n} leaves")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: whether ``leaf`` (a leaf hash) is entry ``index`` of the tree of ``size``."""
    if not 0 <= index < size or len(leaf) != HASH_LEN or any(len(p) != HASH_LEN for p in proof):
        return False
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """``PROOF(m, D[n])``: shows that the first ``old_size`` leaves are a prefix of ``leaves``."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"a consistency proof is between sizes 1..{n}, not {old_size}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: whether the tree of ``new_size`` with ``new_root`` extends ``old_root``."""
    if not 0 < old_size <= new_size or any(len(p) != HASH_LEN for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:  # step 1
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself the first node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
