"""The organisations a signer node serves: their governance logs, their keys, and what it signed for them.

A node that signs for an organisation decides each withdrawal itself
(:func:`harbour.governance.decide.judge`), from a governance log it verified
entry by entry from a genesis it was given with the authority's ``enrol``
certificate. So a custody service that is compromised (its database, its API
and its authority key) cannot add an approver, loosen the policy, whitelist an
address or call someone else's key a vault: each of those is an entry only the
organisation's admin quorum can sign.

- :mod:`.registry`: the enrolled logs (kept in the node's store, replayed at
  start) and which key belongs to which organisation;
- :mod:`.history`: the node's own record of the withdrawals it accepted to sign,
  which velocity and count limits are counted against;
- :mod:`.statement`: the signed statement of that record a node gives for one
  session, so every signer judges with the union of the signers' records.

``docs/nodes.md`` ("Organisations") says what a node checks and what it cannot.
"""
