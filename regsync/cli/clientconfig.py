"""Client configuration that points docker, containerd, podman, pip, uv, conda and pixi at the internal copies a
policy maintains: CA files where TLS needs them, never insecure flags, never a password.

What each client can express differs, and the output says so instead of pretending:
- containerd `hosts.toml` redirects a whole upstream host to one internal URL (with
  `override_path` for a path such as Harbor's project or Nexus's `/repository/<name>/v2`), so it
  fits rules that keep repository names under a common prefix;
- podman/skopeo `registries.conf` remaps repository by repository;
- docker's `registry-mirrors` applies to Docker Hub only and needs identical names at the
  mirror's root; anything else is pulled by its internal name.

One invocation prints one file, valid for its format, so `> /etc/pip.conf` or `> daemon.json` is
safe; what the file cannot carry (CA files to install, copies to pull by their internal names)
goes to stderr. Nothing to configure is a usage error (exit 2) with an empty stdout, so a redirect
never replaces a working file with a comment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from regsync.errors import EXIT_OK, UsageError
from regsync.cli.guard import run_guarded

if TYPE_CHECKING:
    from regsync.policy.models import Policy

CLIENTS = ("docker", "containerd", "podman", "pip", "uv", "conda", "pixi")
DOCKER_HUB_HOSTS = {"docker.io", "registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"}


@dataclass
class Rendered:
    text: str                                       # the file itself
    notes: list[str] = field(default_factory=list)  # for the human, on stderr


@dataclass(frozen=True)
class Route:
    """One image rule as a client sees it: what it asks for, and where the copy lives."""

    upstream: str         # registry host clients name today ("docker.io" for Docker Hub and its mirrors)
    source_repo: str
    target_url: str       # the internal registry's URL, path included (Nexus path routing)
    target_repo: str
    ca_file: str | None

    @property
    def target_host(self) -> str:
        return urlsplit(self.target_url).netloc

    @property
    def target_path(self) -> str:
        return urlsplit(self.target_url).path.rstrip("/")

    @property
    def prefix(self) -> str | None:
        """The repository prefix the target adds to the source's name, or None if names change otherwise."""
        if self.target_repo == self.source_repo:
            return ""
        if self.target_repo.endswith("/" + self.source_repo):
            return self.target_repo[: -len(self.source_repo) - 1]
        return None


def client_config(policy: Policy, client: str, upstream: str | None = None) -> Rendered:
    renderers = {"docker": _docker, "containerd": _containerd, "podman": _podman, "pip": _pip, "uv": _uv,
                 "conda": _conda, "pixi": _pixi}
    if client not in renderers:
        raise UsageError(f"--for must be one of {', '.join(CLIENTS)}")
    if client == "containerd":
        return _containerd(policy, upstream)
    return renderers[client](policy)


def routes(policy: Policy) -> list[Route]:
    found = []
    for rule in policy.images:
        src_name, _, src_repo = rule.source.partition("/")
        dst_name, _, dst_repo = rule.target.partition("/")
        src, dst = policy.registries[src_name], policy.registries[dst_name]
        ca = str(dst.tls.ca_file) if dst.tls and dst.tls.ca_file else None
        found.append(Route(_upstream(src), src_repo, dst.url.rstrip("/"), dst_repo, ca))
    return found


def _upstream(registry) -> str:
    hosts = {urlsplit(url).netloc for url in [registry.url, *registry.mirrors]}
    return "docker.io" if hosts & DOCKER_HUB_HOSTS else urlsplit(registry.url).netloc


def _ca_lines(routes_: list[Route], directory: str) -> list[str]:
    lines = []
    for host, ca in sorted({(r.target_host, r.ca_file) for r in routes_ if r.ca_file}):
        lines.append(f"  install -D -m 0644 {ca} {directory}/{host}/ca.crt")
    return ["CA certificates to install (instead of any insecure setting):", *lines] if lines else []


def _plain_http_warning(routes_: list[Route]) -> list[str]:
    plain = sorted({r.target_host for r in routes_ if r.target_url.startswith("http://")})
    return [f"{host} is plain HTTP: give it TLS; this file does not switch off verification" for host in plain]


def _one_line(lines: list[str]) -> str:
    """Notes folded into an error's one line (errors are one line: a newline would print as `\\n`)."""
    head, *rest = [line.strip() for line in lines] or [""]
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])


def _pull_lines(routes_: list[Route]) -> list[str]:
    return [f"  {r.upstream}/{r.source_repo}  ->  {_client_ref(r)}" for r in routes_]


def _client_ref(route: Route) -> str:
    if route.target_path:  # Nexus's /repository/<name> is an API path docker refs cannot carry
        return f"{route.target_host}{route.target_path}/{route.target_repo}  (API path: use a connector port for clients)"
    return f"{route.target_host}/{route.target_repo}"


def _image_routes(policy: Policy) -> list[Route]:
    found = routes(policy)
    if not found:
        raise UsageError("this policy has no images: rules, so there is no internal registry to point clients at")
    return found


def _docker(policy: Policy) -> Rendered:
    all_routes = _image_routes(policy)
    mirrors = sorted({f"{'https' if r.target_url.startswith('https') else 'http'}://{r.target_host}"
                      for r in all_routes if r.upstream == "docker.io" and r.prefix == "" and not r.target_path})
    pull = ["Pull the internal copies by their internal names:", *_pull_lines(all_routes)]
    if not mirrors:
        raise UsageError("nothing for daemon.json: registry-mirrors needs a rule that keeps Docker Hub names "
                         "unchanged at a registry root. " + _one_line(pull))
    notes = ["for /etc/docker/daemon.json (merge into an existing one)", *pull,
             *_ca_lines(all_routes, "/etc/docker/certs.d"), *_plain_http_warning(all_routes)]
    return Rendered(json.dumps({"registry-mirrors": mirrors}, indent=2) + "\n", notes)


def _containerd(policy: Policy, upstream: str | None = None) -> Rendered:
    all_routes = _image_routes(policy)
    files, unmapped = {}, []
    by_upstream: dict[str, list[Route]] = {}
    for route in all_routes:
        by_upstream.setdefault(route.upstream, []).append(route)
    for host, group in sorted(by_upstream.items()):
        homes = {(r.target_url, r.prefix, r.ca_file) for r in group}
        if len(homes) != 1 or None in {r.prefix for r in group}:
            unmapped += group  # one upstream host can be redirected to one place only
            continue
        url, prefix, ca = homes.pop()
        files[host] = _hosts_toml(host, url, prefix, ca)
    notes = []
    if unmapped:
        notes += ["Not expressible as a host redirect (names change per repository); pull these directly:",
                  *_pull_lines(unmapped)]
    if not files:
        raise UsageError("no upstream host can be redirected as a whole. " + _one_line(notes))
    if upstream is None and len(files) > 1:
        raise UsageError(f"one hosts.toml per upstream host: choose one with --upstream ({', '.join(files)})")
    host = upstream or next(iter(files))
    if host not in files:
        raise UsageError(f"--upstream {host}: no hosts.toml for it; choose one of {', '.join(files)}")
    notes = [f"for /etc/containerd/certs.d/{host}/hosts.toml",
             'with config_path = "/etc/containerd/certs.d" under '
             '[plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml', *notes,
             *_ca_lines(all_routes, "/etc/containerd/certs.d"), *_plain_http_warning(all_routes)]
    return Rendered(files[host], notes)


def _hosts_toml(upstream: str, url: str, prefix: str, ca: str | None) -> str:
    split = urlsplit(url)
    server = "https://registry-1.docker.io" if upstream == "docker.io" else f"https://{upstream}"
    path = split.path.rstrip("/")
    if path or prefix:
        # override_path: containerd then asks <host>/<repo>/manifests/… with no /v2 of its own.
        host_url = f"{split.scheme}://{split.netloc}{path}/v2{'/' + prefix if prefix else ''}"
    else:
        host_url = f"{split.scheme}://{split.netloc}"
    lines = [f"# /etc/containerd/certs.d/{upstream}/hosts.toml", f'server = "{server}"',
             f'[host."{host_url}"]', '  capabilities = ["pull", "resolve"]']
    if ca:
        lines.append(f'  ca = "/etc/containerd/certs.d/{split.netloc}/ca.crt"')
    if path or prefix:
        lines.append("  override_path = true")
    return "\n".join(lines) + "\n"


def _podman(policy: Policy) -> Rendered:
    all_routes = _image_routes(policy)
    lines = ["# /etc/containers/registries.conf.d/50-regsync.conf (podman, buildah, skopeo, cri-o)"]
    notes = []
    for route in all_routes:
        if route.target_path:
            notes.append(f"{route.upstream}/{route.source_repo}: its copy is behind an API path "
                         f"({route.target_url}); give clients a connector port")
            continue
        lines += ["", "[[registry]]", f'prefix = "{route.upstream}/{route.source_repo}"',
                  f'location = "{route.target_host}/{route.target_repo}"']
    if len(lines) == 1:
        raise UsageError("no copy can be a registries.conf location. " + _one_line(notes))
    notes += _ca_lines(all_routes, "/etc/containers/certs.d") + _plain_http_warning(all_routes)
    return Rendered("\n".join(lines) + "\n", notes)


def _package_index(policy: Policy):
    """(name, url, ca, notes) of the first package target; a usage error when there is none."""
    targets = list(dict.fromkeys(rule.target for rule in policy.packages))
    if not targets:
        raise UsageError("this policy has no packages: rules, so there is no internal index to point clients at")
    name = targets[0]
    index = policy.indexes[name]
    url = index.url or f"https://<the web server serving {index.path}>/simple/"
    ca = str(index.tls.ca_file) if index.tls and index.tls.ca_file else None
    notes = []
    if not index.url:
        notes.append(f"index '{name}' is a directory without a url: set `url:` on it to where clients read it")
    if index.auth and index.auth.username:
        # the policy's credentials are the ones regsync uploads with; whether reading needs them too
        # is the server's setting (pypiserver's default `-a update` serves reads to anyone)
        reads = ("pypiserver's default (-a update) serves reads anonymously, so clients need none; "
                 "if it runs with -a download,list, " if index.kind == "pypiserver" else
                 f"if index '{name}' also requires them to read, ")
        notes += [f"The policy's credentials for '{name}' are for uploading. {reads}give them to the client "
                  "through keyring or ~/.netrc, not in this file (they would end up in images and logs)."]
    if targets[1:]:
        notes.append(f"other package targets in this policy: {', '.join(targets[1:])}")
    return name, url, ca, notes


def _pip(policy: Policy) -> Rendered:
    name, url, ca, notes = _package_index(policy)
    lines = [f"# /etc/pip.conf (or ~/.config/pip/pip.conf) for index '{name}'", "[global]", f"index-url = {url}"]
    if ca:
        lines.append(f"cert = {ca}")
    return Rendered("\n".join(lines) + "\n", notes)


def _uv(policy: Policy) -> Rendered:
    name, url, ca, notes = _package_index(policy)
    lines = [f"# uv.toml (~/.config/uv/uv.toml, or [tool.uv] in pyproject.toml) for index '{name}'",
             "[[index]]", f'name = "{name}"', f'url = "{url}"', "default = true"]
    if ca:
        notes.append(f"uv takes the CA from the environment: export SSL_CERT_FILE={ca}")
    return Rendered("\n".join(lines) + "\n", notes)


# conda and pixi: the internal channels a policy fills. A target channel holds the closure of every
# rule that writes to it, whichever upstream channel each record came from, so clients read it as one
# channel with strict priority. pixi's mirrors map the upstream URLs a project names (including
# conda.anaconda.org's, for which TUNA's are mirrors) to it. Never ssl_verify off.

# What clients name when the policy reads a mirror of it (TUNA's channel_alias, and the like).
_CANONICAL = {"cloud/conda-forge": "https://conda.anaconda.org/conda-forge",
              "conda-forge": "https://conda.anaconda.org/conda-forge",
              "cloud/pytorch": "https://conda.anaconda.org/pytorch",
              "pkgs/main": "https://repo.anaconda.com/pkgs/main", "pkgs/free": "https://repo.anaconda.com/pkgs/free",
              "pkgs/r": "https://repo.anaconda.com/pkgs/r"}


def _conda_targets(policy) -> list[tuple[str, str | None, list[str], list[str]]]:
    """(name, client URL or None, upstream URLs, notes) per target channel, in rule order."""
    if not policy.conda:
        raise UsageError("this policy has no conda: rules, so there is no internal channel to point clients at")
    found: dict[str, tuple[str, str | None, list[str], list[str]]] = {}
    for rule in policy.conda:
        channel = policy.channels[rule.target]
        url = channel.url.rstrip("/") if channel.url else None
        name, _, upstreams, notes = found.setdefault(rule.target, (rule.target, url, [], []))
        for source in rule.sources:
            upstream = policy.channels[source].url.rstrip("/")
            for candidate in (upstream, *_canonical_urls(upstream)):
                if candidate not in upstreams:
                    upstreams.append(candidate)
        if url is None and not notes:
            notes.append(f"channel '{rule.target}' is a directory without a url: set `url:` on it to where a web "
                         f"server serves {channel.path}")
        if channel.auth and channel.auth.username and not any("credentials" in n for n in notes):
            notes.append(f"channel '{rule.target}' needs credentials to read: give them with `pixi auth login` or "
                         "conda's keyring/.netrc, not in this file")
        if channel.tls and channel.tls.ca_file and not any("CA" in n for n in notes):
            notes.append(f"CA for {url}: {channel.tls.ca_file} (conda: ssl_verify: <that file>; pixi: SSL_CERT_FILE)")
    return list(found.values())


def _custom_channels(targets) -> dict[str, str]:
    """name → base URL for target channels served under a name clients use (…/conda-forge)."""
    found = {}
    for _, url, upstreams, _ in targets:
        for upstream in upstreams:
            name = upstream.rsplit("/", 1)[1]
            if url and url.endswith("/" + name) and name not in found:
                found[name] = url[: -len(name) - 1]
    return found


def _canonical_urls(url: str) -> list[str]:
    return [canonical for suffix, canonical in _CANONICAL.items() if url.endswith("/" + suffix) and url != canonical]


def _conda(policy: Policy) -> Rendered:
    """.condarc for conda and mamba."""
    targets = _conda_targets(policy)
    urls = [url or f"https://<web server for {name}>" for name, url, _, _ in targets]
    lines = ["# ~/.condarc (or <prefix>/.condarc) for conda and mamba: only the internal channel(s)",
             "channels:", *(f"  - {json.dumps(u)}" for u in urls),
             "default_channels:", *(f"  - {json.dumps(u)}" for u in urls),  # what `defaults` now means
             "channel_priority: strict"]
    custom = _custom_channels(targets)
    if custom:  # `-c conda-forge` in scripts and environment.yml files then reads the mirror too
        lines += ["custom_channels:", *(f"  {name}: {json.dumps(base)}" for name, base in custom.items())]
    ca = sorted({n.split(": ", 1)[1].split(" (")[0] for _, _, _, notes in targets for n in notes if n.startswith("CA")})
    if len(ca) == 1:
        lines.append(f"ssl_verify: {json.dumps(ca[0])}")
    notes = [n for _, _, _, found in targets for n in found]
    if not custom:
        notes.append("`-c conda-forge` (or another channel name) still means upstream: serve the mirror at "
                     "<base>/<that name> to have a custom_channels entry here, or name the internal URL instead")
    notes.append("mamba and conda ask noarch/ and the platform's subdir; both are in the internal channel")
    return Rendered("\n".join(lines) + "\n", notes)


def _pixi(policy: Policy) -> Rendered:
    """pixi's config.toml `[mirrors]`."""
    targets = _conda_targets(policy)
    lines = ["# ~/.pixi/config.toml (or a project's .pixi/config.toml): upstream channels read from the mirror",
             "[mirrors]"]
    seen = set()
    for name, url, upstreams, _ in targets:
        for upstream in upstreams:
            if upstream not in seen:
                seen.add(upstream)
                # with the slash, as rattler matches prefixes: .../conda-forge must not catch .../conda-forge-extra
                mirror = (url or f"https://<web server for {name}>") + "/"
                lines.append(f"{json.dumps(upstream + '/')} = [{json.dumps(mirror)}]")
    notes = [n for _, _, _, found in targets for n in found]
    return Rendered("\n".join(lines) + "\n", notes)


def print_config(policy: Policy, client: str, upstream: str | None = None) -> int:
    rendered = client_config(policy, client, upstream)
    click.echo(rendered.text, nl=False)
    for note in rendered.notes:
        click.echo(f"# {note}", err=True)
    return EXIT_OK


@click.command("client-config")
@click.option("-p", "--policy", "policy_path", required=True, type=click.Path(), help="Policy YAML file.")
@click.option("--for", "client", required=True, type=click.Choice(CLIENTS), help="Which client to configure.")
@click.option("--upstream", help="containerd: the upstream host whose hosts.toml to print, when there are several.")
@run_guarded
def client_config_cmd(policy_path, client, upstream):
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
    from regsync.policy import load_policy

    return print_config(load_policy(policy_path).policy, client, upstream)
