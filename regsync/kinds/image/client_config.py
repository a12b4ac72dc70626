"""Client configuration for the image kind (`client-config --for docker|containerd|podman`): what
each client can express differs, and the output says so instead of pretending:
- containerd `hosts.toml` redirects a whole upstream host to one internal URL (with
  `override_path` for a path such as Harbor's project or Nexus's `/repository/<name>/v2`), so it
  fits rules that keep repository names under a common prefix;
- podman/skopeo `registries.conf` remaps repository by repository;
- docker's `registry-mirrors` applies to Docker Hub only and needs identical names at the
  mirror's root; anything else is pulled by its internal name.
CA files where TLS needs them, never insecure flags, never a password (regsync/cli/clientconfig.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from regsync.errors import UsageError
from regsync.kinds.image.policy import ImageSection, Registry
from regsync.policy.models import Policy
from regsync.policy.section import Rendered

DOCKER_HUB_HOSTS = {"docker.io", "registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"}


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


def routes(policy: Policy) -> list[Route]:
    found = []
    section = ImageSection.of(policy)
    for rule in section.images:
        src_name, _, src_repo = rule.source.partition("/")
        dst_name, _, dst_repo = rule.target.partition("/")
        src, dst = section.registries[src_name], section.registries[dst_name]
        ca = str(dst.tls.ca_file) if dst.tls and dst.tls.ca_file else None
        found.append(Route(_upstream(src), src_repo, dst.url.rstrip("/"), dst_repo, ca))
    return found


def _upstream(registry: Registry) -> str:
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


def docker(policy: Policy, upstream: str | None = None) -> Rendered:
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


def containerd(policy: Policy, upstream: str | None = None) -> Rendered:
    all_routes = _image_routes(policy)
    files: dict[str, str] = {}
    unmapped: list[Route] = []
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


def _hosts_toml(upstream: str, url: str, prefix: str | None, ca: str | None) -> str:
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


def podman(policy: Policy, upstream: str | None = None) -> Rendered:
    all_routes = _image_routes(policy)
    lines = ["# /etc/containers/registries.conf.d/50-regsync.conf (podman, buildah, skopeo, cri-o)"]
    notes: list[str] = []
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
