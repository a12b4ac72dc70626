"""Container images: OCI registries, manifests, copy, layouts, Harbor/Nexus dialects, tags, gates, cosign."""
