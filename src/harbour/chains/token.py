"""The ERC-20 test token: Vyper source shipped inside the package, compiled on first use.

The embedded chain and the tests deploy this token to exercise ERC-20 deposits and
withdrawals end to end. Shipping the source rather than bytecode keeps what runs on
the chain reviewable; the ``vyper`` compiler turns it into bytecode in a fraction of
a second, once per process (the result is kept in memory, keyed by the source's
SHA-256, so an edited source is never served stale bytecode).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from importlib import resources
from typing import Any

ABI = list[dict[str, Any]]

_compiled: dict[str, tuple[ABI, bytes]] = {}
_lock = threading.Lock()


class CompileError(RuntimeError):
    """The Vyper compiler refused a source or produced something that is not an ABI and bytecode."""


def token_source() -> str:
    """The Vyper source of the test token, read from the installed package."""
    return (resources.files("harbour.chains") / "contracts" / "token.vy").read_text(encoding="utf-8")


def compile_vyper(source: str) -> tuple[ABI, bytes]:
    """``(abi, deployment bytecode)`` of a Vyper source; compiled once per process per distinct source."""
    if not isinstance(source, str):
        raise TypeError("Vyper source must be text")
    key = hashlib.sha256(source.encode("utf-8")).hexdigest()
    with _lock:  # one compilation even when many threads ask at once
        if key not in _compiled:
            _compiled[key] = _compile(source)
        abi, bytecode = _compiled[key]
    return copy.deepcopy(abi), bytecode


def _compile(source: str) -> tuple[ABI, bytes]:
    import vyper  # ~0.15 s to import; only the development chain and tests need it

    try:
        output = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    except Exception as exc:  # vyper raises its own exception tree (syntax, type, structure errors)
        raise CompileError(f"vyper {vyper.__version__} refused the source: {exc}") from exc
    abi, code = output.get("abi"), output.get("bytecode")
    if not isinstance(abi, list) or not all(isinstance(entry, dict) for entry in abi):
        raise CompileError("vyper returned an ABI that is not a list of objects")
    if not isinstance(code, str) or not code.startswith("0x") or len(code) < 4:
        raise CompileError("vyper returned no bytecode")
    return abi, bytes.fromhex(code[2:])


def token_artifact() -> tuple[ABI, bytes]:
    """``(abi, bytecode)`` of contracts/token.vy; the constructor takes (name, symbol, decimals, supply)."""
    return compile_vyper(token_source())
