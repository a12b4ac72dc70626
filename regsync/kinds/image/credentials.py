"""Where registry credentials come from: the policy, or the files `docker login`, `skopeo login`
and `podman login` write, searched as containers/image does (containers-auth.json(5)):

1. `$REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json` (what `skopeo login` writes)
2. `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`
3. docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), with its credsStore and credHelpers

The first file with an entry for the host wins."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from regsync.errors import PolicyError
from regsync.kinds.image.auth import Credentials
from regsync.policy.models import Auth

_MAX_AUTH_FILE = 1 << 20  # an auth file is a few entries; anything larger is not one


def resolve_credentials(auth: Auth | None, host: str) -> Credentials | None:
    if auth is None:
        return None
    if auth.docker_config:
        return _from_containers_auth(host) or _from_docker_config(host)
    if auth.username is None:
        return None
    return Credentials(auth.username, auth.password.get_secret_value() if auth.password else "")


def endpoint_credentials(auth: Auth | None, url: str, primary: bool) -> Credentials | None:
    """The credentials for one endpoint of a registry or index: the policy's username/password are
    for the primary URL only, never handed to another host; a mirror gets docker's stored ones."""
    if primary or (auth and auth.docker_config):
        return resolve_credentials(auth, url.split("://", 1)[1].split("/", 1)[0])
    return None


def auth_files() -> list[Path]:
    """The files looked in, in order (for messages too: "no credentials found for HOST in …")."""
    primary = os.environ.get("REGISTRY_AUTH_FILE")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    files = [Path(primary)] if primary else [Path(runtime) / "containers/auth.json"] if runtime else []
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    files.append(Path(config) / "containers/auth.json")
    files.append(Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json")
    return files


def no_credentials_found(host: str) -> str:
    """The 401 message when regsync had nothing to send: say so, rather than "check the credentials"."""
    looked = ", ".join(str(path) for path in auth_files())
    return (f"authentication required, and no credentials were found for {host} (the policy's auth:, "
            f"or docker_config: true with a `docker login`/`skopeo login` entry in: {looked})")


def _from_containers_auth(host: str) -> Credentials | None:
    # containers-auth.json(5) is docker's "auths" format plus per-host credHelpers: its entries are
    # read here directly (docker's library would read only its own config.json path).
    for path in auth_files()[:-1]:
        try:
            with path.open("rb") as handle:
                data = json.loads(handle.read(_MAX_AUTH_FILE + 1)[:_MAX_AUTH_FILE])
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise PolicyError(f"{path}: not a readable auth file ({type(exc).__name__})") from None
        found = _entry(data, host, path)
        if found is not None:
            return found
    return None


def _entry(data: object, host: str, path: Path) -> Credentials | None:
    if not isinstance(data, dict):
        return None
    helper = (data.get("credHelpers") or {}).get(host)
    if isinstance(helper, str) and helper:
        return _from_helper(helper, host)
    for key, entry in (data.get("auths") or {}).items():
        # keys are a host (`skopeo login`), or docker's legacy `https://host/v1/`; a host/namespace
        # key scopes credentials below a registry, which a whole-registry lookup does not use
        name = key.split("://", 1)[-1].split("/", 1)
        if name[0] != host or (len(name) > 1 and name[1].strip("/") not in ("", "v1", "v2")):
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials("<token>", "", identity_token=str(entry["identitytoken"]))
        try:
            username, _, password = base64.b64decode(str(entry.get("auth", "")), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise PolicyError(f"{path}: the entry for {host} is not base64 of user:password") from None
        if username:
            return Credentials(username, password)
    return None


def _from_helper(helper: str, host: str) -> Credentials | None:
    import docker.credentials

    try:
        found = docker.credentials.Store(helper).get(host)  # type: ignore[no-untyped-call]
    except docker.credentials.errors.StoreError as exc:
        raise PolicyError(f"credential helper docker-credential-{helper} for {host}: {type(exc).__name__}") from None
    if found.get("Username") == "<token>":
        return Credentials("<token>", "", identity_token=found.get("Secret", ""))
    return Credentials(found.get("Username", ""), found.get("Secret", "")) if found.get("Username") else None


def _from_docker_config(host: str) -> Credentials | None:
    # docker's own library reads config.json, credsStore and credHelpers exactly as `docker login`
    # wrote them, so we do not re-implement that format.
    import docker.auth
    import docker.errors

    try:
        config = docker.auth.load_config()
        entry = docker.auth.resolve_authconfig(config, registry=host)
    except docker.errors.DockerException as exc:
        raise PolicyError(f"docker credentials for {host}: {type(exc).__name__}") from None
    if not entry:
        return None
    # config.json entries come back as username/password, credential stores as Username/Password.
    entry = {key.lower(): value for key, value in entry.items()}
    if entry.get("identitytoken"):
        return Credentials(entry.get("username") or "<token>", "", identity_token=entry["identitytoken"])
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password") or "")
    return None
