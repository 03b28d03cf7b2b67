"""Custody: organisations, vaults, policies, approvals and the audit log (never a key share)."""
