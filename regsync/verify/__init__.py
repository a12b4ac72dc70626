"""Signatures, provenance and gates: decided on the source digest before any byte is pushed.

`steps` is what the pipeline calls (plan time and apply time); `cosign` reads signatures in the
registry, `keys`/`signatures` verify them against the policy's trust entries, `gates` refuses
images by what they are.
"""
