"""Whether a host a process is told to listen on is the loopback interface (only this machine reaches it).

Services decide by it what a listener beyond this machine needs (TLS for the API, a
token for metrics); a name other than ``localhost`` is never resolved here, so it
counts as reachable from elsewhere.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
