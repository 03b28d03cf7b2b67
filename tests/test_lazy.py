"""harbour.util.lazy: a module imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harbour.util.lazy import lazy_module


def test_a_loaded_module_is_returned_as_it_is() -> None:
    assert lazy_module("json") is sys.modules["json"]


def test_an_unknown_module_is_refused_at_once() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        lazy_module("no_such_module_here")


@pytest.mark.process  # a fresh interpreter, where the module is not loaded yet
def test_the_import_runs_at_the_first_attribute_read() -> None:
    code = (
        "import sys\n"
        "from harbour.util.lazy import lazy_module\n"
        "sys.modules.pop('colorsys', None)\n"
        "m = lazy_module('colorsys')\n"
        "before = type(m).__name__\n"
        "value = m.rgb_to_hsv(1.0, 0.0, 0.0)\n"
        "print(before, type(m).__name__, value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(
        maxsplit=2
    )
    assert out[:2] == ["_LazyModule", "module"]
    assert out[2].strip() == "(0.0, 1.0, 1.0)"
