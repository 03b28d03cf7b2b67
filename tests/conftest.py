"""Fixtures shared by every test module.

``softhsm`` (a private SoftHSM2 token per test, see tests/softhsm.py) lives here so
any test can ask for it by name, including those that start node subprocesses.
"""

from softhsm import softhsm  # noqa: F401 (registered with pytest by being in this module)
