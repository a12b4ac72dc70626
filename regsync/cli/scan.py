"""`regsync scan FILE`: the vulnerability gate's question for one artifact, by hand."""

from __future__ import annotations

from pathlib import Path

import click

from regsync.cli.guard import run_guarded

SEVERITY_CHOICE = click.Choice(["none", "low", "medium", "high", "critical"])


@click.command("scan")
@click.argument("artifact")
@click.option("-p", "--policy", "policy_path", type=click.Path(path_type=Path),
              help="Take the database (and its max_age) from this policy's vulnerabilities: section.")
@click.option("--db", "db_path", type=click.Path(path_type=Path),
              help="The OSV database folder (PyPI/all.zip, Debian/all.zip, …) when no policy is given.")
@click.option("--max-severity", type=SEVERITY_CHOICE, default="none", show_default=True,
              help="Exit 3 when a match is rated above this (none: any known vulnerability).")
@click.option("--fixed-only", is_flag=True, help="Count only vulnerabilities with a fixed version.")
@click.option("--unscored-as", type=SEVERITY_CHOICE, default="critical", show_default=True,
              help="What a record without a CVSS vector counts as.")
@click.option("--json", "as_json", is_flag=True, help="Print the evidence as JSON (as the audit trail records it).")
@click.option("--allow-http-registry", is_flag=True, help="An image REF: talk plain HTTP to its registry (loopback, tests).")
@click.option("--registry-cacert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="An image REF: CA bundle for its registry's TLS certificate.")
@run_guarded
def scan_cmd(artifact, policy_path, db_path, max_severity, fixed_only, unscored_as, as_json, allow_http_registry,
             registry_cacert):
    """List the known vulnerabilities of one artifact from the offline OSV database, and judge
    them as a policy's `gates: {vulnerabilities: …}` would. Nothing is downloaded.

    ARTIFACT is a wheel or sdist (name and version from its file name), an image layer (a
    tar, gzip or not) or a folder of one, or an image HOST/REPOSITORY[:TAG|@DIGEST] in a
    registry (credentials from the docker config, read-only), whose layers' dpkg/apk
    databases, Python distributions and npm (node_modules), Composer (installed.json) and
    RubyGems (specifications/*.gemspec) packages are read. Conda packages are not in OSV's
    data: reported as not covered.

    \b
    Examples:
      regsync scan --db /var/lib/regsync/osv requests-2.30.0-py3-none-any.whl
      regsync scan -p policy.yaml --max-severity high dist/app-1.0.tar.gz
      regsync scan --db /var/lib/regsync/osv --max-severity high registry.corp/base/debian:12
    Exit 0 when nothing is above --max-severity, 3 when something is (or could not be
    checked), 2 on usage or policy errors (a database older than the policy's max_age).
    """
    import json

    from regsync.errors import EXIT_OK, EXIT_REFUSED, UsageError
    from regsync.policy.vulns import VulnGate
    from regsync.vulns.database import OsvDatabase
    from regsync.vulns.gate import VulnerabilityRefusal
    from regsync.vulns.scan import scan_path

    if (policy_path is None) == (db_path is None):
        raise UsageError("give the database: --db DIR, or -p POLICY with a vulnerabilities: section")
    if policy_path is not None:
        from regsync.kinds.registry import SECTIONS
        from regsync.policy import load_policy

        config = load_policy(policy_path, sections=SECTIONS).policy.vulnerabilities
        if config is None:
            raise UsageError(f"{policy_path} has no vulnerabilities: section (vulnerabilities: {{db: /path/to/osv}})")
        db = OsvDatabase(config.db, config.max_age)
    else:
        db = OsvDatabase(db_path, where="--db")
    gate = VulnGate(max_severity=max_severity, fixed_only=fixed_only, unscored_as=unscored_as)
    try:
        path = Path(artifact)
        evidence, refused = (scan_path(path, db, gate) if path.exists()
                             else _scan_ref(artifact, db, gate, allow_http_registry, registry_cacert)), None
    except VulnerabilityRefusal as exc:
        evidence, refused = exc.evidence, exc.reason
    if as_json:
        click.echo(json.dumps(evidence, indent=2))
    else:
        _print(Path(artifact).name if Path(artifact).exists() else artifact, evidence)
    if refused:
        click.echo(f"refused: {refused}", err=True)
        return EXIT_REFUSED
    click.echo(f"{artifact}: admitted ({len(evidence.get('matches', []))} match(es), none above "
               f"max_severity {max_severity})", err=True)
    return EXIT_OK


def _scan_ref(ref: str, db, gate, allow_http: bool, cacert) -> dict:
    """An image in a registry, read-only: its layers read through the verifying reader."""
    from regsync.cli.verify import parse_image_ref
    from regsync.errors import UsageError
    from regsync.kinds.image.client import RegistryClient
    from regsync.kinds.image.credentials import resolve_credentials
    from regsync.kinds.image.tree import manifest_tree
    from regsync.kinds.image.vulns import scan_image
    from regsync.policy.models import Auth

    if "/" not in ref:
        raise UsageError(f"{ref}: no such file, and not an image HOST/REPOSITORY[:TAG|@DIGEST]")
    try:
        host, repo, reference = parse_image_ref(ref)
    except UsageError as exc:   # most often a file name mistyped: say that first
        raise UsageError(f"{ref}: no such file; as an image reference: {exc}") from None
    client = RegistryClient(host, f"{'http' if allow_http else 'https'}://{host}",
                            resolve_credentials(Auth(docker_config=True), host), ca_file=cacert)
    client.ca_setting = "--registry-cacert"
    found = client.head_manifest(repo, reference)
    if found is None:
        raise UsageError(f"{ref}: no such image")
    root = client.get_manifest(repo, found.digest)
    return scan_image(db, gate, client, repo, manifest_tree(client, repo, root), f"{host}/{repo}@{found.digest}")


def _print(artifact: str, evidence: dict) -> None:
    from rich.table import Table

    from regsync.console import stdout

    matches = evidence.get("matches", [])
    table = Table(title=f"{artifact}: {len(matches)} known vulnerabilit{'y' if len(matches) == 1 else 'ies'}",
                  title_justify="left")
    for column in ("package", "version", "id", "aliases", "severity", "fixed", "decision"):
        table.add_column(column, overflow="fold")
    for m in matches:
        severity = f"{m['severity']} {m['score']}" if m.get("score") is not None else m["severity"]
        table.add_row(m["package"], m["version"], m["id"], ", ".join(m["aliases"][:3]), severity, m["fixed"] or "-",
                      m["decision"])
    stdout.print(table)
    for note in evidence.get("not_covered", []):
        stdout.print(f"not covered (not checked, so not clean): {note}")
