"""Harbor: a repository lives in a project, and Harbor answers 401 inside a project that does not exist.

Harbor core's v2 auth middleware (goharbor/harbor `src/server/middleware/v2auth/auth.go`) looks the
project up before anything else: every request into a missing project, GET and HEAD included, is
answered `401 UNAUTHORIZED` ("project … not found") however good the credentials. So the project
API is asked first (`HEAD /api/v2.0/projects?project_name=`, once per project per run, read-only,
at plan time too): a missing project's repositories are empty. With `harbor: {create_projects: true}`
the project is created (`POST /api/v2.0/projects`) before the first write into it, with the
policy's visibility and storage quota, as the policy's (robot) account; without it, every read or
write into the missing project fails with a message that names the project and the setting.
Nothing is written to Harbor's API during `plan`.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import requests
from requests.auth import HTTPBasicAuth

from regsync.errors import NotFound, RegistryError
from regsync.net.http import connection_failure, make_session, retry_policy
from regsync.content.checkpoint import UploadCheckpoint
from regsync.content.reader import VerifyingReader
from regsync.kinds.image.auth import Credentials
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.manifest import Descriptor, Manifest
from regsync.kinds.image.policy import Harbor

API = "/api/v2.0"
_TIMEOUT = (15, 60)
# Harbor's own rule for project names (src/common/utils/utils.go, ValidateProjectName).
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def project_of(repo: str) -> str:
    project, sep, rest = repo.partition("/")
    if not sep or not rest:
        raise RegistryError(repo, None, f"Harbor repositories are <project>/<repository>: '{repo}' names no project")
    if not PROJECT_NAME.match(project) or len(project) > 255:
        raise RegistryError(repo, None, f"'{project}' is not a valid Harbor project name "
                                        "(lower-case letters, digits, and . _ - between them)")
    return project


class HarborProjects:
    """Harbor's project API, used only to make sure a project exists before writing into it."""

    def __init__(self, name: str, base: str, credentials: Credentials | None, ca_file: str | None = None,
                 settings: Harbor | None = None):
        self.name, self.base = name, base.rstrip("/")
        self.settings = settings or Harbor()
        self.session = make_session(ca_file, 4, retry_policy(3, 0.5))
        if credentials is not None:
            self.session.auth = HTTPBasicAuth(credentials.username, credentials.password)
        self._username = credentials.username if credentials else None
        self._known: dict[str, bool] = {}   # project → exists, for this run
        self._lock = threading.Lock()

    def present(self, project: str) -> bool:
        """Whether `project` exists, asked once per run (and known after we create it)."""
        with self._lock:
            if project in self._known:
                return self._known[project]
        exists = self.exists(project)
        with self._lock:
            return self._known.setdefault(project, exists)

    def ensure(self, project: str) -> None:
        """Make sure `project` exists before a write into it (at most one creation per run)."""
        if self.present(project):
            return
        if not self.settings.create_projects:
            raise self.missing(project)
        with self._lock:
            if self._known.get(project):
                return
            self.create(project)
            self._known[project] = True

    def missing(self, project: str) -> RegistryError:
        return RegistryError(self._ref(project), None,
                             f"Harbor project '{project}' does not exist: create it, or set "
                             f"`harbor: {{create_projects: true}}` on registry '{self.name}' to let regsync create it")

    def exists(self, project: str) -> bool:
        response = self._call("HEAD", f"{API}/projects", project, params={"project_name": project})
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._error(response, project, "check")

    def create(self, project: str) -> None:
        body = {"project_name": project,
                "metadata": {"public": "true" if self.settings.public else "false"},
                "storage_limit": self.settings.storage_limit}
        response = self._call("POST", f"{API}/projects", project, json=body)
        if response.status_code == 201:
            return
        if response.status_code == 409:
            return  # created concurrently (another shard, another run, a human): what we wanted
        raise self._error(response, project, "create")

    def _call(self, method: str, path: str, project: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise RegistryError(self._ref(project), None, f"Harbor API: {connection_failure(exc, self.base)}") from None
        except requests.RequestException as exc:
            raise RegistryError(self._ref(project), None, f"Harbor API unreachable: {type(exc).__name__}") from None
        response.close()
        return response

    def _error(self, response: requests.Response, project: str, action: str) -> RegistryError:
        status, who = response.status_code, self._username or "anonymous"
        if status == 401:
            message = f"Harbor rejected the credentials of '{who}' (401) while trying to {action} project '{project}'"
        elif status == 403:
            message = (f"'{who}' may not {action} Harbor project '{project}' (403): create the project by hand, "
                       "or give the robot account the system permission to create projects")
        else:
            message = f"Harbor answered {status} to {action} project '{project}'{_harbor_message(response)}"
        return RegistryError(self._ref(project), status, message)

    def _ref(self, project: str) -> str:
        return f"{self.name}/{project}"


def _harbor_message(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return f": {str(errors[0].get('message', ''))[:200]}" if errors else ""
    except (ValueError, AttributeError):
        return ""


class HarborClient(RegistryClient):
    """A registry client that asks Harbor's project API before it reads or writes into a project."""

    def __init__(self, name: str, url: str, credentials: Credentials | None = None, ca_file: str | None = None, *,
                 harbor: Harbor | None = None, **options: Any):
        super().__init__(name, url, credentials, ca_file, **options)
        self.projects = HarborProjects(name, self.base, credentials, ca_file, harbor)

    def check_target(self, repo: str) -> None:
        project = project_of(repo)
        if not self.projects.present(project) and not self.projects.settings.create_projects:
            raise self.projects.missing(project)

    def _project_missing(self, repo: str) -> bool:
        """True when `repo`'s project does not exist yet (to be created): its repositories are empty.
        Asking the registry would only get Harbor's 401 for a missing project."""
        self.check_target(repo)
        return not self.projects.present(project_of(repo))

    def list_tags(self, repo: str) -> list[str]:
        if self._project_missing(repo):
            raise NotFound(self.ref(repo), None, "no such repository (its Harbor project does not exist yet)")
        return super().list_tags(repo)

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        return None if self._project_missing(repo) else super().head_manifest(repo, reference)

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest:
        if self._project_missing(repo):
            raise NotFound(self.ref(repo, reference), None, "not found (its Harbor project does not exist yet)")
        return super().get_manifest(repo, reference, expect)

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        return None if self._project_missing(repo) else super().get_referrers(repo, digest)

    def blob_exists(self, repo: str, digest: str, size: int | None = None) -> bool:
        return False if self._project_missing(repo) else super().blob_exists(repo, digest, size)

    def upload_blob(self, repo: str, descriptor: Descriptor, reader: VerifyingReader,
                    checkpoint: UploadCheckpoint | None = None) -> None:
        self.projects.ensure(project_of(repo))
        return super().upload_blob(repo, descriptor, reader, checkpoint=checkpoint)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        self.projects.ensure(project_of(repo))
        return super().mount_blob(repo, digest, from_repo)

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> None:
        self.projects.ensure(project_of(repo))
        return super().put_manifest(repo, reference, manifest)
