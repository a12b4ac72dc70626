"""Client configuration for the package kind (`client-config --for pip|uv`): the first package
target, with its CA file; never `trusted-host`, never a password (regsync/cli/clientconfig.py)."""

from __future__ import annotations

from regsync.errors import UsageError
from regsync.kinds.package.policy import PackageSection
from regsync.policy.models import Policy
from regsync.policy.section import Rendered


def _package_index(policy: Policy) -> tuple[str, str, str | None, list[str]]:
    """(name, url, ca, notes) of the first package target; a usage error when there is none."""
    section = PackageSection.of(policy)
    targets = list(dict.fromkeys(rule.target for rule in section.packages))
    if not targets:
        raise UsageError("this policy has no packages: rules, so there is no internal index to point clients at")
    name = targets[0]
    index = section.indexes[name]
    url = index.url or f"https://<the web server serving {index.path}>/simple/"
    ca = str(index.tls.ca_file) if index.tls and index.tls.ca_file else None
    notes = []
    if not index.url:
        notes.append(f"index '{name}' is a directory without a url: set `url:` on it to where clients read it")
    if index.auth and index.auth.username:
        # the policy's credentials are the ones regsync uploads with; whether reading needs them too
        # is the server's setting (pypiserver's default `-a update` serves reads to anyone)
        reads = ("pypiserver's default (-a update) serves reads anonymously, so clients need none; "
                 "if it runs with -a download,list, " if index.flavour == "pypiserver" else
                 f"if index '{name}' also requires them to read, ")
        notes += [f"The policy's credentials for '{name}' are for uploading. {reads}give them to the client "
                  "through keyring or ~/.netrc, not in this file (they would end up in images and logs)."]
    if targets[1:]:
        notes.append(f"other package targets in this policy: {', '.join(targets[1:])}")
    return name, url, ca, notes


def pip(policy: Policy, upstream: str | None = None) -> Rendered:
    name, url, ca, notes = _package_index(policy)
    lines = [f"# /etc/pip.conf (or ~/.config/pip/pip.conf) for index '{name}'", "[global]", f"index-url = {url}"]
    if ca:
        lines.append(f"cert = {ca}")
    return Rendered("\n".join(lines) + "\n", notes)


def uv(policy: Policy, upstream: str | None = None) -> Rendered:
    name, url, ca, notes = _package_index(policy)
    lines = [f"# uv.toml (~/.config/uv/uv.toml, or [tool.uv] in pyproject.toml) for index '{name}'",
             "[[index]]", f'name = "{name}"', f'url = "{url}"', "default = true"]
    if ca:
        notes.append(f"uv takes the CA from the environment: export SSL_CERT_FILE={ca}")
    return Rendered("\n".join(lines) + "\n", notes)
