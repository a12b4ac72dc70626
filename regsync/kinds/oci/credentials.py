"""Where registry credentials come from: the policy, or docker's config.json and its helpers."""

from __future__ import annotations

from regsync.errors import PolicyError
from regsync.kinds.oci.auth import Credentials
from regsync.policy.models import Auth


def resolve_credentials(auth: Auth | None, host: str) -> Credentials | None:
    if auth is None:
        return None
    if auth.docker_config:
        return _from_docker_config(host)
    if auth.username is None:
        return None
    return Credentials(auth.username, auth.password.get_secret_value() if auth.password else "")


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
