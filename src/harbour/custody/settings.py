"""The service's tunables, read from ``custody.json`` and shared by the domain modules and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400


@dataclass
class Settings:
    confirmations: int = 1
    approval_lifetime: int = DAY
    """Seconds an approval counts while its transaction waits for more: after that it expires and must be given
    again, so a quorum is never completed with consent given under circumstances long past."""
    gas_headroom: int = 2
    """An ETH withdrawal reserves ``gas_limit * max_fee`` times this, so a fee rise cannot overdraw."""
    sweep_interval: float = 60.0
    """Seconds between two passes that sweep deposit addresses by the policy's settings (custody/sweep.py)."""
