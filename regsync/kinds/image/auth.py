"""Registry authentication as one requests.auth.AuthBase: callers never see challenges or tokens.

The first 401 (usually the /v2/ ping) teaches the scheme. Basic credentials are then sent up
front; bearer tokens are fetched per scope (derived from each request's path and method),
cached until shortly before they expire, and refreshed when a registry answers 401 anyway.

Credentials are bound to the registry's origin (scheme, host and port): a URL on the same host
over plain http, or on another port, gets none, and a bearer realm must be https whenever the
registry is.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from regsync.errors import RegistryError
from regsync.net.http import origin, require_https
from regsync.content.reader import read_bounded

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_REPO_PATH = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags|referrers)/")
MAX_TOKEN_BYTES = 1 << 20  # a token response is a few KiB (a JWT, perhaps with its certificate chain)
_DRAIN_BYTES = 64 << 10


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""
    identity_token: str | None = None

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        return f"Credentials(username={self.username!r}, password=***)"


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


def scopes_for(request: requests.PreparedRequest) -> tuple[str, ...]:
    url = urlsplit(request.url or "")  # a prepared request always has its url
    match = _REPO_PATH.match(url.path)
    if not match:
        return ()
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    scopes = [f"repository:{match.group(1)}:{actions}"]
    mount_from = parse_qs(url.query).get("from")
    if mount_from:
        scopes.append(f"repository:{mount_from[0]}:pull")
    return tuple(scopes)


class RegistryAuth(AuthBase):
    def __init__(self, credentials: Credentials | None, token_session: requests.Session, name: str, url: str):
        self.credentials, self.name, self.url, self.origin = credentials, name, url, origin(url)
        self._token_session = token_session
        self._scheme: str | None = None
        self._params: dict[str, str] = {}
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url or "") != self.origin:
            return request  # credentials go to the registry's own origin only
        self._authorize(request, refresh=False)
        # register_hook is unannotated in types-requests
        request.register_hook("response", self._on_response)  # type: ignore[no-untyped-call]
        return request

    def _authorize(self, request: requests.PreparedRequest, refresh: bool) -> None:
        if self._scheme == "basic" and self.credentials:
            HTTPBasicAuth(self.credentials.username, self.credentials.password)(request)
        elif self._scheme == "bearer":
            scopes = scopes_for(request) or tuple(self._params.get("scope", "").split())
            request.headers["Authorization"] = f"Bearer {self._token(scopes, refresh)}"

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge or getattr(response.request, "_regsync_retried", False):
            return response
        if origin(response.url) != self.origin:
            # A redirect target (blob storage, or a hostile mirror) asking for credentials gets none:
            # requests already dropped the Authorization header when the origin changed, and this
            # hook, which rides along on the redirected request, must not put it back.
            return response
        scheme, params = parse_challenge(challenge)
        if scheme not in ("basic", "bearer"):
            return response
        with self._lock:
            self._scheme, self._params = scheme, params
        request = response.request
        if request.body is not None and not isinstance(request.body, (bytes, str)):
            return response  # a streamed body cannot be replayed; the caller retries the upload
        if scheme == "basic" and not self.credentials:
            return response
        retry = request.copy()
        if scheme == "basic":
            self._authorize(retry, refresh=True)
        else:
            # Ask for what we need and what the registry named (it may want more, e.g. a mount source).
            scopes = tuple(dict.fromkeys(scopes_for(retry) + tuple(params.get("scope", "").split())))
            retry.headers["Authorization"] = f"Bearer {self._token(scopes, refresh=True)}"
        # our own marker on requests' object, read back with getattr above
        retry._regsync_retried = True  # type: ignore[attr-defined]
        read_bounded(response, _DRAIN_BYTES, decode=False)  # drain so the connection goes back to the pool
        response.close()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new

    def _token(self, scopes: tuple[str, ...], refresh: bool) -> str:
        scopes = tuple(s for s in scopes if s)
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached and not refresh and cached[1] > time.monotonic():
                return cached[0]
        token, lifetime = self._fetch_token(scopes)
        # Renew a little before expiry so a token never dies between our check and the request.
        margin = min(30.0, lifetime / 4)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + lifetime - margin)
        return token

    def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = self._params.get("realm")
        if not realm:
            raise RegistryError(self.name, 401, "bearer challenge without a realm")
        require_https(self.url, realm, self.name, "the bearer token realm")
        query = {"service": self._params.get("service", "")} if self._params.get("service") else {}
        query_list = list(query.items()) + [("scope", s) for s in scopes]
        auth = None
        if self.credentials and self.credentials.identity_token is None:
            auth = (self.credentials.username, self.credentials.password)
        try:
            if self.credentials and self.credentials.identity_token:
                # docker's identity tokens are OAuth2 refresh tokens (distribution token spec).
                data = dict(query, grant_type="refresh_token", refresh_token=self.credentials.identity_token,
                            client_id="regsync", scope=" ".join(scopes))
                response = self._token_session.post(realm, data=data, timeout=30)
            else:
                response = self._token_session.get(realm, params=query_list, auth=auth, timeout=30)
        except requests.RequestException as exc:
            raise RegistryError(self.name, None, f"token service unreachable: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise RegistryError(self.name, response.status_code, "token service rejected the credentials")
        if response.status_code != 200:
            raise RegistryError(self.name, response.status_code, "token service failed")
        try:
            body = response.json()
            token = body.get("token") or body["access_token"]
            lifetime = float(body.get("expires_in") or 60)
        except (ValueError, KeyError, TypeError):
            raise RegistryError(self.name, None, "token service answered without a token") from None
        return token, lifetime
