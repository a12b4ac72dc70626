"""`regsync verify IMAGE-REF`: check one image by hand, with `cosign verify`'s (and, with --type,
`cosign verify-attestation`'s) flag names.

The same code as the sync pipeline decides; only the trust entry comes from flags instead of a
policy. Exit 0 when verified, 3 with the refusal reason when not (README, "Exit codes").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from regsync.errors import UsageError

_REF = re.compile(r"^(?P<host>[^/]+)/(?P<repo>[^@:]+(?:/[^@:]+)*)(?::(?P<tag>[\w][\w.-]{0,127}))?"
                  r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def parse_image_ref(ref: str) -> tuple[str, str, str]:
    """'127.0.0.1:5000/ai/pytorch:2.9' → (host, repo, tag or digest); a digest wins over a tag."""
    # inside: importing regsync.policy loads pydantic, and `verify --help` must not (benchmarks P10)
    from regsync.policy.names import invalid_repository, invalid_tag, is_repository, is_tag, shown

    match = _REF.match(ref)
    if not match or not ("." in match["host"] or ":" in match["host"] or match["host"] == "localhost"):
        raise UsageError(f"'{ref}' is not HOST[:PORT]/REPOSITORY[:TAG|@DIGEST] (e.g. registry.corp/ai/torch:2.9)")
    if not is_repository(match["repo"]):
        raise UsageError(f"'{shown(ref)}': {invalid_repository(match['repo'])}")
    if match["tag"] and not is_tag(match["tag"]):
        raise UsageError(f"'{shown(ref)}': {invalid_tag(match['tag'])}")
    return match["host"], match["repo"], match["digest"] or match["tag"] or "latest"


@click.command("verify")
@click.argument("image_ref")
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="PEM public key (cosign.pub) the signature must verify with.")
@click.option("--certificate-identity", help="Keyless: the exact identity (SAN) of the signing certificate.")
@click.option("--certificate-identity-regexp", help="Keyless: a regular expression the identity must match.")
@click.option("--certificate-oidc-issuer", help="Keyless: the OIDC issuer the certificate must name.")
@click.option("--trusted-root", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Keyless: trusted_root.json (Fulcio CAs, Rekor and CT log keys) for offline verification.")
@click.option("--type", "--attestation-type", "attestation_type", metavar="TYPE",
              help="Verify an in-toto attestation of this predicate type instead of the signature (cosign "
                   "verify-attestation's --type: slsaprovenance1, slsaprovenance, spdxjson, cyclonedx, vuln, "
                   "openvex, custom, or a predicateType URI).")
@click.option("--allow-http-registry", is_flag=True, help="Talk plain HTTP to the registry (loopback, tests).")
@click.option("--registry-cacert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="CA bundle for the registry's TLS certificate.")
def verify_cmd(image_ref, key, certificate_identity, certificate_identity_regexp, certificate_oidc_issuer,
               trusted_root, attestation_type, allow_http_registry, registry_cacert):
    """Verify the cosign signature of one image, read-only; print the evidence as JSON.

    \b
    Examples:
      regsync verify registry.corp/ai/pytorch:2.9 --key cosign.pub
      regsync verify registry.corp/ai/pytorch@sha256:… --certificate-identity-regexp '^https://github.com/pytorch/' \\
          --certificate-oidc-issuer https://token.actions.githubusercontent.com --trusted-root trusted_root.json
      regsync verify registry.corp/ai/pytorch:2.9 --type slsaprovenance1 --key cosign.pub
    """
    from regsync.cli.guard import run_guarded

    run_guarded(_verify)(image_ref, key, certificate_identity, certificate_identity_regexp,
                         certificate_oidc_issuer, trusted_root, attestation_type, allow_http_registry, registry_cacert)


def _verify(image_ref, key, identity, identity_regex, issuer, trusted_root, attestation_type, allow_http,
            cacert) -> int:
    from regsync.errors import EXIT_OK, RegistryError
    from regsync.kinds.image.client import RegistryClient
    from regsync.kinds.image.credentials import resolve_credentials
    from regsync.kinds.image.policy import ImageVerify
    from regsync.policy.models import AttestationRequirement, Auth
    from regsync.kinds.image.signatures import check_signatures

    trust = _trust_from_flags(key, identity, identity_regex, issuer, trusted_root)
    host, repo, reference = parse_image_ref(image_ref)
    client = RegistryClient(host, f"{'http' if allow_http else 'https'}://{host}",
                            resolve_credentials(Auth(docker_config=True), host), ca_file=cacert)
    client.ca_setting = "--registry-cacert"
    try:
        found = client.head_manifest(repo, reference)
    except RegistryError as exc:
        if not allow_http and "does not speak TLS" in str(exc):  # the fix is a flag of this command
            raise RegistryError(exc.ref, exc.status, f"{host} does not speak TLS: for a plain-HTTP registry "
                                                     f"(loopback, a test) add --allow-http-registry") from None
        raise
    if found is None:
        raise UsageError(f"{image_ref}: no such image")
    name = "key" if key else "keyless"
    if attestation_type:
        from regsync.kinds.image.attestations import check_attestations
        from regsync.trust.intoto import COSIGN_TYPES

        wanted = COSIGN_TYPES.get(attestation_type, attestation_type)
        verify = ImageVerify(require_attestations=[AttestationRequirement(type=wanted, trust=[name])])
        evidence = {"attestations": check_attestations(client, repo, found.digest, verify, {name: trust})}
        what = f"{wanted} attestation"
    else:
        signature = check_signatures(client, repo, found.digest, ImageVerify(signature="required", trust=[name]),
                                     {name: trust})
        assert signature is not None, "signature: required either verifies or raises"
        evidence = signature
        what = "cosign signature"
    click.echo(json.dumps({"image": f"{host}/{repo}@{found.digest}", **evidence}, indent=2))
    click.echo(f"Verified {host}/{repo}@{found.digest}: {what} checked against "
               f"{'the key' if key else 'the certificate identity'}", err=True)
    return EXIT_OK


def _trust_from_flags(key, identity, identity_regex, issuer, trusted_root):
    from pydantic import ValidationError

    from regsync.policy.models import Keyless, Trust

    keyless_flags = identity or identity_regex or issuer or trusted_root
    if bool(key) == bool(keyless_flags):
        raise UsageError("give either --key, or --certificate-identity[-regexp] with --certificate-oidc-issuer")
    if key:
        from regsync.trust.keys import load_public_key

        load_public_key(key, "--key")  # a bad key file is a usage error, before any network
        return Trust(cosign_key=key)
    if not issuer:
        raise UsageError("keyless verification needs --certificate-oidc-issuer")
    if not trusted_root:  # regsync never asks Fulcio or Rekor online
        raise UsageError("keyless verification needs --trusted-root trusted_root.json (the Fulcio CA, CT log "
                         "and Rekor keys, e.g. from `cosign trusted-root create` or the Sigstore TUF repository)")
    try:
        return Trust(keyless=Keyless(issuer=issuer, identity=identity, identity_regex=identity_regex),
                     trusted_root=trusted_root)
    except ValidationError:
        raise UsageError("give exactly one of --certificate-identity or --certificate-identity-regexp") from None
