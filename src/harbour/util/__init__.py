"""Foundation helpers that every layer may use: strict JSON, canonical CBOR, atomic file writes, serving.

Nothing here imports from Harbour (a test checks it), so any module, from
``crypto`` to ``api``, can depend on these without an import circle.
"""
