"""The scheme objects: one per name a key share may carry, each with its own rules, and nobody above asks which."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import EcdsaSetupParty
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import UsageError
from harbour.mpc.frost_party import FrostSigner
from harbour.mpc.keyshare import SCHEME_CURVES
from harbour.mpc.schemes import SCHEMES, UnknownScheme, scheme_by_name, scheme_of, setup_session_id
from helpers import ALL_SCHEMES, ECDSA_SCHEME, cached_keygen

SRC = Path(__file__).resolve().parent.parent / "src" / "harbour"
MESSAGE = b"pay 12 HKD-stablecoin to the market maker"
DIGEST = hashlib.sha256(MESSAGE).digest()


def test_every_scheme_a_share_may_carry_has_one_object_on_the_same_curve() -> None:
    assert set(SCHEMES) == set(SCHEME_CURVES) == set(ALL_SCHEMES)
    assert {name: s.curve for name, s in SCHEMES.items()} == SCHEME_CURVES
    assert all(s.name == name for name, s in SCHEMES.items())


def test_an_unknown_scheme_is_a_usage_error_and_a_value_error() -> None:
    for name in ("frost-p256", "", "ECDSA-SECP256K1"):
        with pytest.raises(UnknownScheme, match="unknown scheme"):
            scheme_by_name(name)
    assert issubclass(UnknownScheme, UsageError) and issubclass(UnknownScheme, ValueError)


def test_only_threshold_ecdsa_signs_a_digest_with_exactly_t_after_a_pairwise_setup() -> None:
    rules = {name: (s.signs_digest, s.exact_signers, s.has_setup, s.recoverable) for name, s in SCHEMES.items()}
    assert rules == {
        "frost-secp256k1": (False, False, False, False),
        "frost-ed25519": (False, False, False, False),
        "frost-taproot": (False, False, False, False),
        ECDSA_SCHEME: (True, True, True, True),
    }


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_the_scheme_builds_the_parties_of_its_own_protocols(scheme: str) -> None:
    shares = cached_keygen(scheme, 2, 3)
    kind = scheme_of(shares[1])
    assert kind is scheme_by_name(scheme) is scheme_of(shares[1].public)
    message = DIGEST if kind.signs_digest else MESSAGE
    signer = kind.signer(b"s" * 32, shares[1], [1, 2], message)
    assert isinstance(signer, EcdsaSigner if kind.has_setup else FrostSigner)
    if kind.has_setup:
        assert isinstance(kind.setup_party(b"s" * 32, shares[1]), EcdsaSetupParty)
        assert kind.setup_extension is not None
        assert kind.setup_extension in shares[1].extensions
        assert kind.decode_setup(shares[1].extensions[kind.setup_extension]) is not None
    else:
        with pytest.raises(UsageError, match="no pairwise setup"):
            kind.setup_party(b"s" * 32, shares[1])


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_a_signature_survives_its_wire_fields_and_verifies_only_under_its_own_scheme(scheme: str) -> None:
    shares = cached_keygen(scheme, 2, 3)
    kind = scheme_by_name(scheme)
    message = DIGEST if kind.signs_digest else MESSAGE
    signature = runner.sign_any(shares, [1, 2], message)
    key = shares[1].group_public_key
    assert kind.verify(key, message, signature)
    assert not kind.verify(key, message[::-1], signature)
    fields = kind.signature_fields(signature)
    assert kind.signature_from(bytes(fields["signature"]), fields.get("recovery_id")) == signature
    for other in SCHEMES.values():
        if other.curve == kind.curve and other is not kind and other.recoverable != kind.recoverable:
            assert not other.verify(key, message, signature)


def test_a_recoverable_signature_needs_a_valid_recovery_id() -> None:
    kind = scheme_by_name(ECDSA_SCHEME)
    signature = runner.sign_any(cached_keygen(ECDSA_SCHEME, 2, 3), [1, 2], DIGEST)
    assert isinstance(signature, EcdsaSignature)
    for bad in (None, 4, -1, True, "1"):
        with pytest.raises(ValueError, match="recovery id"):
            kind.signature_from(signature.to_bytes(), bad)


def test_the_setup_session_id_is_derived_from_the_first_phase() -> None:
    assert setup_session_id(b"a" * 32) == setup_session_id(b"a" * 32) != setup_session_id(b"b" * 32)
    assert len(setup_session_id(b"a" * 32)) == 32
    assert runner.setup_session_id is setup_session_id


@pytest.mark.parametrize(
    "module",
    [
        "node/jobs.py",
        "node/coordinator.py",
        "node/driving.py",
        "node/ceremonies.py",
        "node/clusterkey.py",
        "cli/session.py",
        "cli/mpc.py",
        "cli/cluster.py",
    ],
)
def test_code_above_mpc_never_asks_which_scheme_it_holds(module: str) -> None:
    text = (SRC / module).read_text()
    asks = re.findall(r"scheme\s*[!=]=|scheme\s+(?:not\s+)?in\s*\(|is_ecdsa|ECDSA_SCHEME|\"ecdsa-secp256k1\"", text)
    assert asks == []
