"""`regsync client-config`: one configuration file that points docker, containerd, podman, pip, uv,
conda or pixi at the internal copies a policy maintains. Each kind renders its own clients
(its policy section's `clients`: regsync/kinds/<kind>/clients.py); this module is the verb.

One invocation prints one file, valid for its format, so `> /etc/pip.conf` or `> daemon.json` is
safe; what the file cannot carry (CA files to install, copies to pull by their internal names)
goes to stderr. Nothing to configure is a usage error (exit 2) with an empty stdout, so a redirect
never replaces a working file with a comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from regsync.errors import EXIT_OK, UsageError
from regsync.cli.guard import run_guarded

if TYPE_CHECKING:
    from regsync.policy.models import Policy
    from regsync.policy.section import Rendered, Sections


def clients(sections: Sections | None = None) -> dict[str, Any]:
    """`--for` name → renderer, in the kinds' order (the registry's sections unless given)."""
    if sections is None:
        from regsync.kinds.registry import SECTIONS

        sections = SECTIONS
    return {name: render for section in sections for name, render in section.clients.items()}


class _Clients(click.Choice):
    """The kinds' client names, read when a value is checked and not for `--help`, which shows the
    metavar: listing them would import every kind (regsync --help starts light, tests/test_startup.py)."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return tuple(clients())

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass


def client_config(policy: Policy, client: str, upstream: str | None = None,
                  sections: Sections | None = None) -> Rendered:
    renderers = clients(sections)
    if client not in renderers:
        raise UsageError(f"--for must be one of {', '.join(renderers)}")
    rendered: Rendered = renderers[client](policy, upstream)
    return rendered


def print_config(policy: Policy, client: str, upstream: str | None = None, sections: Sections | None = None) -> int:
    rendered = client_config(policy, client, upstream, sections)
    click.echo(rendered.text, nl=False)
    for note in rendered.notes:
        click.echo(f"# {note}", err=True)
    return EXIT_OK


@click.command("client-config")
@click.option("-p", "--policy", "policy_path", required=True, type=click.Path(), help="Policy YAML file.")
@click.option("--for", "client", required=True, type=_Clients(), metavar="CLIENT",
              help="Which client to configure: one of those above.")
@click.option("--upstream", help="containerd: the upstream host whose hosts.toml to print, when there are several.")
@run_guarded
def client_config_cmd(policy_path: str, client: str, upstream: str | None) -> int:
    """Print one configuration file that points a client at the policy's internal copies:
    docker's daemon.json, containerd's hosts.toml, podman's registries.conf, pip.conf,
    uv.toml, conda's .condarc or pixi's config.toml. Only the file goes to stdout, so redirecting it is safe; CA files to install and
    copies the file cannot express go to stderr. Never an insecure flag, never a password.
    Exit 2 when the policy gives the client nothing to configure.

    \b
    Examples:
      regsync client-config -p policy.yaml --for pip > /etc/pip.conf
      regsync client-config -p policy.yaml --for conda > ~/.condarc
      regsync client-config -p policy.yaml --for docker > /etc/docker/daemon.json
      regsync client-config -p policy.yaml --for containerd --upstream docker.io \\
          > /etc/containerd/certs.d/docker.io/hosts.toml
    """
    from regsync.kinds.registry import SECTIONS
    from regsync.policy import load_policy

    return print_config(load_policy(policy_path, sections=SECTIONS).policy, client, upstream, SECTIONS)
