"""Addresses no withdrawal pays and no address-book entry names: the zero address and the precompiles.

Ether or tokens sent to one of these are gone: no key controls the zero address
(it is where a mistyped or defaulted recipient ends up), and a precompile is
code the protocol runs in place of a contract, which keeps whatever it is sent.
So these are refused outright, with no override: there is no payment to them
that an institution means to make. The service refuses them when a withdrawal
is submitted or an entry proposed; every signer node refuses them again when
it decides a withdrawal (:func:`harbour.governance.decide.withdrawal_facts`)
or replays an ``address.add`` (:mod:`harbour.governance.state`), so a custody
service that skipped the check still gets no signature.

The precompiles, by the fork that added them (the Osaka execution
specification lists all 18):

- 0x01..0x04 ecrecover, SHA-256, RIPEMD-160, identity (Frontier);
- 0x05 modexp (EIP-198), 0x06..0x08 alt_bn128 add, mul, pairing (EIP-196,
  EIP-197), Byzantium;
- 0x09 BLAKE2 F (EIP-152, Istanbul);
- 0x0a KZG point evaluation (EIP-4844, Cancun);
- 0x0b..0x11 BLS12-381 G1 add, G1 MSM, G2 add, G2 MSM, pairing, map to G1,
  map to G2 (EIP-2537, Prague);
- 0x100 secp256r1 signature verification P256VERIFY (EIP-7951, Osaka; the
  same address RIP-7212 gives it on rollups).

A vault paying one of its own addresses is a different fault (it moves nothing
and spends gas) that depends on the vault, so the service and the nodes check
it where they know the source (:func:`check_destination`'s ``source``).
"""

from __future__ import annotations

from typing import Final

ZERO: Final = 0
PRECOMPILES: Final = {
    0x01: "ecrecover",
    0x02: "SHA-256",
    0x03: "RIPEMD-160",
    0x04: "identity",
    0x05: "modexp (EIP-198)",
    0x06: "alt_bn128 add (EIP-196)",
    0x07: "alt_bn128 mul (EIP-196)",
    0x08: "alt_bn128 pairing (EIP-197)",
    0x09: "BLAKE2 F (EIP-152)",
    0x0A: "KZG point evaluation (EIP-4844)",
    0x0B: "BLS12-381 G1 add (EIP-2537)",
    0x0C: "BLS12-381 G1 MSM (EIP-2537)",
    0x0D: "BLS12-381 G2 add (EIP-2537)",
    0x0E: "BLS12-381 G2 MSM (EIP-2537)",
    0x0F: "BLS12-381 pairing (EIP-2537)",
    0x10: "BLS12-381 map to G1 (EIP-2537)",
    0x11: "BLS12-381 map to G2 (EIP-2537)",
    0x100: "P256VERIFY (EIP-7951)",
}
"""Precompile address (as a number) -> what it computes."""


def reserved(address: str) -> str | None:
    """Why ``address`` (0x and 40 hex digits) can receive nothing, or None if it is an ordinary address."""
    value = int(address[2:], 16)
    if value == ZERO:
        return "the zero address, which no key controls"
    what = PRECOMPILES.get(value)
    return None if what is None else f"the {what} precompile, which keeps whatever it is sent"


def check_destination(address: str, source: str | None = None) -> str | None:
    """What is wrong with paying ``address`` from ``source`` (None: source not known), or None if nothing."""
    why = reserved(address)
    if why is not None:
        return f"{address} is {why}: funds sent there are lost"
    if source is not None and source.lower() == address.lower():
        return f"{address} is the address the withdrawal pays from: a payment to itself moves nothing"
    return None
