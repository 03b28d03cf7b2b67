"""RFC 9162 Merkle trees: the reference tree heads and proofs, and every proof in trees of many sizes.

The known answers are the test data published with Certificate Transparency for
RFC 6962 (whose hashing RFC 9162 keeps): eight leaves, the tree head of every
prefix, and audit and consistency paths in that tree.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.crypto import merkle

LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (0-based leaf index, tree size, audit path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [  # (old size, new size, consistency path)
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def test_reference_tree_heads() -> None:
    for size in range(len(LEAVES) + 1):
        assert merkle.root(HASHES[:size]).hex() == ROOTS[size], size


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_audit_paths(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(index, HASHES[:size])
    assert [p.hex() for p in proof] == path
    assert merkle.verify_inclusion(index, size, HASHES[index], proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_reference_consistency_paths(old: int, new: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(old, HASHES[:new])
    assert [p.hex() for p in proof] == path
    assert merkle.verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """A node's two children, written as one leaf, do not hash to the node (second preimage)."""
    left, right = HASHES[1], HASHES[2]
    assert merkle.leaf_hash(left + right) != merkle.node_hash(left, right)
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


def test_right_edge_gives_the_reference_tree_heads() -> None:
    frontier: list[bytes] = []
    assert merkle.frontier_root(frontier).hex() == ROOTS[0]
    for size, leaf in enumerate(HASHES):
        frontier = merkle.frontier_append(frontier, size, leaf)
        assert merkle.frontier_root(frontier).hex() == ROOTS[size + 1], size + 1


@given(st.lists(st.binary(max_size=8), max_size=300))
@settings(max_examples=40, deadline=None)
def test_right_edge_gives_the_root_of_every_prefix(entries: list[bytes]) -> None:
    """One subtree root per set bit of the size, and the same root as the whole tree, after every append."""
    leaves = [merkle.leaf_hash(e) for e in entries]
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier = merkle.frontier_append(frontier, size, leaf)
        assert len(frontier) == (size + 1).bit_count()
        assert merkle.frontier_root(frontier) == merkle.root(leaves[: size + 1])


def tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("size", range(1, 34))
def test_every_inclusion_proof_verifies_and_nothing_else_does(size: int) -> None:
    leaves = tree(size)
    head = merkle.root(leaves)
    for index in range(size):
        proof = merkle.inclusion_proof(index, leaves)
        assert merkle.verify_inclusion(index, size, leaves[index], proof, head)
        other = (index + 1) % size
        if other != index:
            assert not merkle.verify_inclusion(other, size, leaves[index], proof, head), "wrong position"
            assert not merkle.verify_inclusion(index, size, leaves[other], proof, head), "wrong leaf"
        if proof:
            bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not merkle.verify_inclusion(index, size, leaves[index], bent, head)
            assert not merkle.verify_inclusion(index, size, leaves[index], proof[:-1], head), "truncated"
        assert not merkle.verify_inclusion(index, size, leaves[index], [*proof, head], head), "extended"


@pytest.mark.parametrize("new_size", range(1, 20))
def test_every_consistency_proof_verifies_and_rewrites_do_not(new_size: int) -> None:
    leaves = tree(new_size)
    new_head = merkle.root(leaves)
    for old_size in range(1, new_size + 1):
        old_head = merkle.root(leaves[:old_size])
        proof = merkle.consistency_proof(old_size, leaves)
        assert merkle.verify_consistency(old_size, new_size, old_head, new_head, proof)
        # the old log with one entry rewritten is not a prefix of the new one
        rewritten = [*leaves[: old_size - 1], merkle.leaf_hash(b"rewritten")]
        assert not merkle.verify_consistency(old_size, new_size, merkle.root(rewritten), new_head, proof)
        if old_size < new_size:
            assert not merkle.verify_consistency(old_size, new_size, old_head, new_head, []), "empty proof"
            assert not merkle.verify_consistency(old_size, new_size, old_head, merkle.root(tree(new_size + 1)), proof)
            assert not merkle.verify_consistency(new_size, old_size, new_head, old_head, proof), "sizes swapped"


@given(st.integers(1, 200), st.data())
def test_consistency_and_inclusion_hold_for_random_sizes(size: int, data: st.DataObject) -> None:
    leaves = tree(size)
    old = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, size - 1))
    assert merkle.verify_consistency(
        old, size, merkle.root(leaves[:old]), merkle.root(leaves), merkle.consistency_proof(old, leaves)
    )
    assert merkle.verify_inclusion(
        index, size, leaves[index], merkle.inclusion_proof(index, leaves), merkle.root(leaves)
    )


def test_malformed_proofs_are_refused_not_raised() -> None:
    leaves = tree(5)
    head = merkle.root(leaves)
    proof = merkle.inclusion_proof(2, leaves)
    assert not merkle.verify_inclusion(5, 5, leaves[2], proof, head)
    assert not merkle.verify_inclusion(-1, 5, leaves[2], proof, head)
    assert not merkle.verify_inclusion(2, 5, leaves[2][:31], proof, head)
    assert not merkle.verify_inclusion(2, 5, leaves[2], [p[:16] for p in proof], head)
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, head, [])
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof(5, leaves)
    with pytest.raises(ValueError, match="sizes"):
        merkle.consistency_proof(0, leaves)
