"""Air-gap transfer: everything a policy selects into one directory, and back out on the far side.

`export` applies the plan into a bundle sink; `source` opens a bundle as the policy's sources;
`format` holds the bundle's own files; `signature` signs and checks them. Nothing here names a kind
of artifact: each kind's bytes and bundle.json section come from its Kind (regsync/kinds/).

The directory is an OCI image layout (blobs stored once across all images) whose refs are named
"<registry>/<repository>:<tag>" as the policy names its sources, plus `bundle.json` (what was
exported and how it was verified) and `SHA256SUMS` (checkable with `sha256sum -c`). On import the
bundle stands in for the policy's source registries, so tag selection, signature checks, the diff
against the target and the push are the very code `regsync sync` runs.
"""
