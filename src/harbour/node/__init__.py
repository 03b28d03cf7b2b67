"""The signer-node layer: where key shares live between protocol runs, and how nodes talk.

``keyfile`` keeps a party's share encrypted at rest under a passphrase;
``backup`` makes disaster-recovery copies encrypted to an offline recovery key.
``store`` is a node's encrypted object store, its data key wrapped by a
passphrase or by a PKCS#11 token. ``identity`` gives each node its signing and
encryption keys and public descriptor; ``sealed`` signs and encrypts every
protocol envelope between nodes so a relay can neither read, forge, re-target,
reorder nor replay it. ``approval`` verifies the certificates without which a
node joins no session, and ``signlog`` is the node's append-only, hash-chained
record of what it did.

``config`` creates a node's directory; ``service`` is the node itself (one
request in, one response out, the messages of ``rpc``), running the protocol
parties that ``jobs`` chains into operations and keeping new shares aside in
``staging`` until the whole committee holds them; ``server`` serves it over HTTP;
``coordinator`` drives sessions across nodes and relays their sealed messages,
through ``transport``; ``localnet`` runs a cluster of node processes on one machine.
This layer does I/O so that ``mpc`` and ``crypto`` never have to.
"""
