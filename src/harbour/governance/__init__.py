"""An organisation's rules, as pure values that both the custody service and the signer nodes evaluate.

The policy (:mod:`.policy`), the quorum matcher (:mod:`.matching`) and the
quorum-signed governance log that says which users, keys, policy and address
book are in force (:mod:`.log`, :mod:`.changes`, :mod:`.state`) live below both
``custody/`` and ``node/``: the service decides with them, and each signer node
decides again with the same code from entries it verified itself, so a
compromised service cannot make the nodes apply rules the organisation's admins
did not sign. Nothing here does I/O or reads a clock.
"""
