"""Generators for the formats ``/openapi.json`` names beyond JSON Schema's own (``api/schemas.py`` ``FORMATS``).

A format is a rule a regular expression cannot state (an EIP-55 checksum, a
point of the Ed25519 group, a cursor the service issued) or states only at a
size that generating from it would take minutes (the refused characters of free
text). Schemathesis generates a value of a format with the strategy registered
for it here, and only such values, so a test that sends schema-valid requests
sends requests the server must accept. Importing this module registers them.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress

import schemathesis
from hypothesis import strategies as st
from nacl.signing import SigningKey

from harbour.chains.ethereum import checksum_address
from harbour.governance.destinations import reserved
from harbour.util import text


def _spelled(raw: bytes, case: int) -> str:
    """One address in one of its three accepted spellings: EIP-55, all lower case, all upper case."""
    return (checksum_address(raw), "0x" + raw.hex(), "0x" + raw.hex().upper())[case]


ADDRESSES = st.builds(_spelled, st.binary(min_size=20, max_size=20), st.integers(0, 2))
LOW_ADDRESSES = st.builds(_spelled, st.integers(0, 0x200).map(lambda n: n.to_bytes(20, "big")), st.integers(0, 2))
"""The zero address, the precompiles and their neighbours, which random bytes never are."""
DESTINATIONS = st.one_of(ADDRESSES, LOW_ADDRESSES).filter(lambda a: reserved(a) is None)
PUBLIC_KEYS = st.binary(min_size=32, max_size=32).map(lambda seed: SigningKey(seed).verify_key.encode().hex())


def cursor(at: dt.datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


OFFSETS = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23), max_value=dt.timedelta(hours=23)))
MINUTE_OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
"""The offsets a time in ISO 8601 spells: whole minutes."""
CURSORS = st.builds(cursor, st.datetimes(timezones=OFFSETS), st.uuids().map(str))

_CHARACTERS = st.characters(categories=["L", "M", "N", "P", "S", "Zs"])
"""Every assigned character that is not a control, format or separator; the filter drops the few text refuses."""
NAMES = st.text(_CHARACTERS, min_size=1, max_size=text.MAX_NAME).filter(
    lambda v: text.refused_character(v) is None and not v.isspace()
)
NOTES = st.text(_CHARACTERS, max_size=text.MAX_NOTE).filter(lambda v: text.refused_character(v) is None)

GENERATORS: dict[str, st.SearchStrategy[str]] = {
    "ethereum-address": st.one_of(ADDRESSES, LOW_ADDRESSES),
    "ethereum-destination": DESTINATIONS,
    "ed25519-public-key": PUBLIC_KEYS,
    "uint256-decimal": st.integers(1, 2**256 - 1).map(str),
    "page-cursor": CURSORS,
    "free-text-name": NAMES,
    "free-text-note": NOTES,
    "cidr": st.one_of(
        st.builds(
            lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)), st.ip_addresses(v=4), st.integers(0, 32)
        ),
        st.builds(
            lambda a, n: str(ipaddress.ip_network(f"{a}/{n}", strict=False)), st.ip_addresses(v=6), st.integers(0, 128)
        ),
    ),
    "utc-time": st.datetimes(
        min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 12, 30), timezones=MINUTE_OFFSETS
    ).map(lambda at: at.isoformat()),
}
for _format, _strategy in GENERATORS.items():
    schemathesis.openapi.format(_format, _strategy)
