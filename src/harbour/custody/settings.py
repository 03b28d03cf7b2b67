"""The service's tunables, read from ``custody.json`` and shared by the domain modules and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    confirmations: int = 1
    policy_quorum: int = 1
    """Admins other than the proposer who must approve a policy change."""
    gas_headroom: int = 2
    """An ETH withdrawal reserves ``gas_limit * max_fee`` times this, so a fee rise cannot overdraw."""
