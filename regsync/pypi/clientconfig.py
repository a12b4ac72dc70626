"""What pip and uv need to install from the internal index: its URL and CA, never trusted-host."""

from __future__ import annotations

from regsync.policy.models import Policy


def pip_config(policy: Policy) -> str:
    targets = list(dict.fromkeys(rule.target for rule in policy.packages))
    if not targets:
        return "# this policy has no packages: rules, so there is no internal index to point pip at\n"
    name = targets[0]
    index = policy.indexes[name]
    if index.kind == "directory":
        url = "https://<the web server serving " + str(index.path) + ">/simple/"
    else:
        url = index.url
    ca = index.tls.ca_file if index.tls and index.tls.ca_file else None
    lines = [f"# pip.conf (/etc/pip.conf, or ~/.config/pip/pip.conf) for index '{name}'", "[global]",
             f"index-url = {url}"]
    if ca:
        lines.append(f"cert = {ca}")
    lines += ["", "# uv.toml (or pyproject.toml [tool.uv])", "[[index]]", f'name = "{name}"', f'url = "{url}"',
              "default = true"]
    if ca:
        lines += ["", f"# uv reads the CA from the environment: export SSL_CERT_FILE={ca}"]
    if index.auth and index.auth.username:
        lines += ["", "# The index needs credentials to read: give them to pip/uv through keyring or ~/.netrc,",
                  "# not in this file (they would end up in images and logs)."]
    if len(targets) > 1:
        lines += ["", f"# other package targets in this policy: {', '.join(targets[1:])}"]
    return "\n".join(lines) + "\n"
