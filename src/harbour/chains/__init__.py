"""Chain adapters: what a chain needs from a Harbour key and signature (addresses,
hashing, signature encoding), kept apart from the protocols that produce them."""
