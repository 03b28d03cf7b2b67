"""A module imported on first use: for heavy libraries that only some runs of a process need.

A signer node that never runs a threshold-ECDSA session has no use for numpy
(the bit matrices of the OT extension), and loading it costs a tenth of the CPU a
node spends before it listens. :func:`lazy_module` returns the module object at
once and runs its import the first time an attribute is read, through the
standard library's :class:`importlib.util.LazyLoader`. Type checkers see the real
module: callers write ``if TYPE_CHECKING: import numpy as np`` and
``else: np = lazy_module("numpy")``.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, to be imported when it is first used (at once if it is loaded already)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
