"""Client configuration for the conda kind (`client-config --for conda|pixi`)."""

from __future__ import annotations

import json

from regsync.errors import UsageError
from regsync.kinds.conda.policy import CondaSection
from regsync.policy.models import Policy
from regsync.policy.section import Rendered

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


Target = tuple[str, "str | None", list[str], list[str]]


def _conda_targets(policy: Policy) -> list[Target]:
    """(name, client URL or None, upstream URLs, notes) per target channel, in rule order."""
    section = CondaSection.of(policy)
    if not section.conda:
        raise UsageError("this policy has no conda: rules, so there is no internal channel to point clients at")
    found: dict[str, Target] = {}
    for rule in section.conda:
        channel = section.channels[rule.target]
        url = channel.url.rstrip("/") if channel.url else None
        name, _, upstreams, notes = found.setdefault(rule.target, (rule.target, url, [], []))
        for source in rule.sources:
            upstream = (section.channels[source].url or "").rstrip("/")   # a source channel has a url
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


def _custom_channels(targets: list[Target]) -> dict[str, str]:
    """name → base URL for target channels served under a name clients use (…/conda-forge)."""
    found: dict[str, str] = {}
    for _, url, upstreams, _ in targets:
        for upstream in upstreams:
            name = upstream.rsplit("/", 1)[1]
            if url and url.endswith("/" + name) and name not in found:
                found[name] = url[: -len(name) - 1]
    return found


def _canonical_urls(url: str) -> list[str]:
    return [canonical for suffix, canonical in _CANONICAL.items() if url.endswith("/" + suffix) and url != canonical]


def conda(policy: Policy, upstream: str | None = None) -> Rendered:
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


def pixi(policy: Policy, upstream: str | None = None) -> Rendered:
    """pixi's config.toml `[mirrors]`."""
    targets = _conda_targets(policy)
    lines = ["# ~/.pixi/config.toml (or a project's .pixi/config.toml): upstream channels read from the mirror",
             "[mirrors]"]
    seen: set[str] = set()
    for name, url, upstreams, _ in targets:
        for upstream in upstreams:
            if upstream not in seen:
                seen.add(upstream)
                # with the slash, as rattler matches prefixes: .../conda-forge must not catch .../conda-forge-extra
                mirror = (url or f"https://<web server for {name}>") + "/"
                lines.append(f"{json.dumps(upstream + '/')} = [{json.dumps(mirror)}]")
    notes = [n for _, _, _, found in targets for n in found]
    return Rendered("\n".join(lines) + "\n", notes)
