"""Known-answer tests: RFC 9591 appendix E and the FROST-secp256k1-SHA256-TR-v1 vectors.

Every intermediate value the vectors publish is checked: dealer shares, nonces
from the given randomness, commitments, binding-factor inputs and factors,
signature shares and the final signature, which must also verify with an
independent verifier where one exists (libsodium for Ed25519, libsecp256k1's
BIP-340 for Taproot).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from coincurve import PublicKeyXOnly

from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc import frost, taproot
from harbour.mpc.ciphersuite import FROST_ED25519, FROST_SECP256K1, FROST_TAPROOT, Ciphersuite

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"

CASES = [
    ("frost-rfc9591/frost-secp256k1-sha256.json", FROST_SECP256K1),
    ("frost-rfc9591/frost-ed25519-sha512.json", FROST_ED25519),
    ("frost-secp256k1-tr/vectors.json", FROST_TAPROOT),
]


def load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / path).read_text())
    return data


def scripted(*chunks: bytes) -> Any:
    """An rng that returns the vector's randomness, in order, and nothing else."""
    it: Iterator[bytes] = iter(chunks)

    def rng(n: int) -> bytes:
        chunk = next(it)
        assert len(chunk) == n
        return chunk

    return rng


def h(x: str) -> bytes:
    return bytes.fromhex(x)


@pytest.mark.parametrize(("path", "suite"), CASES, ids=[c[1].name for c in CASES])
def test_signing_vectors(path: str, suite: Ciphersuite) -> None:
    v = load(path)
    g = suite.group
    inputs = v["inputs"]
    n = int(v["config"]["MAX_PARTICIPANTS"])
    t = int(v["config"]["MIN_PARTICIPANTS"])
    message = h(inputs["message"])
    secret = g.decode_scalar(h(inputs["group_secret_key"]))
    pk_hex = inputs.get("group_public_key") or inputs["verifying_key_key"]

    # Trusted dealer (appendix C) with the published polynomial.
    coeffs = [g.decode_scalar(h(c)) for c in inputs["share_polynomial_coefficients"]]
    dealt = trusted_dealer_keygen(g, secret, t, n, coefficients=coeffs)
    assert dealt.group_public_key.encode().hex() == pk_hex
    for entry in inputs["participant_shares"]:
        assert g.encode_scalar(dealt.shares[entry["identifier"]]).hex() == entry["participant_share"]

    keys: dict[int, frost.SigningKey] = {}
    for i in inputs["participant_list"]:
        key = frost.SigningKey(i, dealt.shares[i], dealt.group_public_key, dealt.verification_shares)
        keys[i] = taproot.signing_key(key, tweak=False) if suite.bip340 else key

    # Round one: nonces from the given randomness, and their commitments.
    nonces: dict[int, frost.SigningNonces] = {}
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        rng = scripted(h(out["hiding_nonce_randomness"]), h(out["binding_nonce_randomness"]))
        nonce = frost.commit(suite, i, keys[i].secret_share, rng)
        com = nonce.commitment
        assert com.hiding.encode().hex() == out["hiding_nonce_commitment"]
        assert com.binding.encode().hex() == out["binding_nonce_commitment"]
        hiding, binding = frost.SigningNonces(*nonce.take(), com).take()
        assert g.encode_scalar(hiding).hex() == out["hiding_nonce"]
        assert g.encode_scalar(binding).hex() == out["binding_nonce"]
        nonces[i] = frost.SigningNonces(hiding, binding, com)

    commitments = [n.commitment for n in nonces.values()]
    public_key = next(iter(keys.values())).group_public_key
    inputs_by_id = frost.binding_factor_inputs(suite, public_key, frost.sorted_commitments(commitments), message)
    ctx = frost.signing_context(suite, public_key, commitments, message)
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert inputs_by_id[i].hex() == out["binding_factor_input"]
        assert g.encode_scalar(ctx.rhos[i]).hex() == out["binding_factor"]

    # Round two: signature shares, each verifying on its own.
    shares = {}
    for out in v["round_two_outputs"]["outputs"]:
        i = out["identifier"]
        z = frost.sign_share(suite, keys[i], nonces[i], ctx)
        assert g.encode_scalar(z).hex() == out["sig_share"]
        assert frost.verify_share(suite, ctx, i, z, keys[i].verification_shares[i])
        shares[i] = z

    sig = frost.aggregate(suite, ctx, shares, public_key, keys[1].verification_shares, message)
    assert sig.hex() == v["final_output"]["sig"]
    assert suite.verify(public_key, message, sig)
    assert not suite.verify(public_key, message + b"!", sig)


def test_ed25519_vector_signature_is_plain_ed25519() -> None:
    v = load("frost-rfc9591/frost-ed25519-sha512.json")
    pk = h(v["inputs"]["group_public_key"])
    nacl.signing.VerifyKey(pk).verify(h(v["inputs"]["message"]), h(v["final_output"]["sig"]))


def test_taproot_vector_signature_is_plain_bip340() -> None:
    v = load("frost-secp256k1-tr/vectors.json")
    xonly = h(v["inputs"]["verifying_key_key"])[1:]
    assert PublicKeyXOnly(xonly).verify(h(v["final_output"]["sig"]), h(v["inputs"]["message"]))


def test_nonces_from_vectors_refuse_second_use() -> None:
    v = load("frost-rfc9591/frost-secp256k1-sha256.json")
    out = v["round_one_outputs"]["outputs"][0]
    rng = scripted(h(out["hiding_nonce_randomness"]), h(out["binding_nonce_randomness"]))
    nonce = frost.commit(FROST_SECP256K1, 1, 5, rng)
    nonce.take()
    with pytest.raises(frost.NonceReuseError):
        nonce.take()


def test_taproot_dkg_vectors() -> None:
    """The Zcash Foundation's DKG vectors: proofs of knowledge, shares, tweaked keys."""
    from harbour.crypto.shamir import commit, evaluate
    from harbour.mpc import dkg

    v = load("frost-secp256k1-tr/vectors_dkg.json")
    suite = FROST_TAPROOT
    g = suite.group
    inputs = v["inputs"]
    t = int(v["config"]["MIN_PARTICIPANTS"])
    n = int(v["config"]["MAX_PARTICIPANTS"])
    parties = list(range(1, n + 1))
    coefficients = {
        i: [g.decode_scalar(h(inputs[str(i)]["signing_key"])), g.decode_scalar(h(inputs[str(i)]["coefficient"]))]
        for i in parties
    }
    commitments = {i: [g.decode_point(h(c)) for c in inputs[str(i)]["vss_commitments"]] for i in parties}
    for i in parties:
        assert commit(g, coefficients[i]) == commitments[i]
        proof = h(inputs[str(i)]["proof_of_knowledge"])
        assert dkg.verify_knowledge(suite, i, commitments[i][0], proof, b"")
        # Bound to its prover: the same proof does not verify for anyone else.
        assert not dkg.verify_knowledge(suite, i % n + 1, commitments[i][0], proof, b"")
        assert not dkg.verify_knowledge(suite, i, commitments[i][0], proof, b"other session")

    for i in parties:
        # "signing_shares" of participant i are the shares it received, keyed by sender.
        received = {j: g.decode_scalar(h(inputs[str(i)]["signing_shares"][str(j)])) for j in parties if j != i}
        for j, s in received.items():
            assert evaluate(coefficients[j], i, g.order) == s
        received[i] = evaluate(coefficients[i], i, g.order)
        share = dkg.finalize(suite, i, t, parties, commitments, received)
        base = frost.SigningKey(i, share.secret_share, share.group_public_key, share.verification_shares)
        tweaked = taproot.tweak_key(base, None)
        assert g.encode_scalar(tweaked.secret_share).hex() == inputs[str(i)]["signing_share"]
        assert tweaked.group_public_key.encode().hex() == inputs["verifying_key"]
        for j in parties:
            assert tweaked.verification_shares[j].encode().hex() == inputs[str(j)]["verifying_share"]
        q = taproot.output_key(share.group_public_key)
        assert isinstance(q, Secp256k1Point)
        assert q.encode().hex() == inputs["verifying_key"]


@pytest.mark.parametrize("suite", [FROST_SECP256K1, FROST_ED25519, FROST_TAPROOT], ids=lambda s: s.name)
@pytest.mark.parametrize("prefix", [b"", bytes(range(129))])
def test_h1_with_a_shared_prefix_is_h1_of_the_concatenation(suite: Ciphersuite, prefix: bytes) -> None:
    h1 = suite.H1_with_prefix(prefix)
    for i in (1, 3, 255):
        suffix = suite.group.encode_scalar(i)
        assert h1(suffix) == suite.H1(prefix + suffix)
