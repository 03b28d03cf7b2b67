"""The one error a malformed key share raises, whichever part of it is wrong.

It sits below both the key share (mpc/keyshare.py) and the records a share
carries in its extensions (mpc/ecdsa_record.py), so that a broken pairwise setup
inside a share fails exactly as a broken share does, and neither module has to
import the other to say so.
"""

from __future__ import annotations


class KeyShareError(ValueError):
    """A key share (or its encoding) that is malformed or inconsistent."""
