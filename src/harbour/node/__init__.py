"""The signer-node layer: where key shares live between protocol runs.

``keyfile`` keeps a party's share encrypted at rest under a passphrase;
``backup`` makes disaster-recovery copies encrypted to an offline recovery key.
This layer does I/O so that ``mpc`` and ``crypto`` never have to.
"""
