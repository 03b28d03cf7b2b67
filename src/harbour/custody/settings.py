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
    webhook_allow_private: bool = False
    """Allow webhook URLs that resolve to loopback, private or reserved addresses (a receiver inside the network)."""
    webhook_max_endpoints: int = 20
    """Enabled webhook endpoints an organisation may have: each notified event writes one delivery row per endpoint
    in the commit that makes the change, so the count bounds that work."""
    webhook_deadline: float = 15.0
    """Seconds one delivery attempt may take in all, however slowly the receiver answers (kept under the claim lease
    of :data:`harbour.custody.dispatch.LEASE`)."""
    webhook_max_attempts: int = 10
    """Attempts per delivery before it is marked failed."""
    webhook_retry_base: float = 2.0
    """Seconds: attempt k+1 waits a random time up to ``min(cap, base * 2**(k-1))`` after attempt k failed."""
    webhook_retry_cap: float = 3600.0
