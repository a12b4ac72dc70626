"""Keys, keyless certificates, sigstore bundles and signing: bytes + a trust entry → evidence."""
