"""Harbor: a repository lives in a project, and a push into a missing project is denied.

With `harbor: {create_projects: true}` the project is checked (`HEAD /api/v2.0/projects?project_name=`)
and created (`POST /api/v2.0/projects`) before the first write into it, once per run, with the
policy's visibility and storage quota, as the policy's (robot) account. Nothing is written to
Harbor's API during `plan`: the first write is a blob upload, a mount or a manifest PUT at apply time.
"""

from __future__ import annotations

import re
import threading

import requests
from requests.auth import HTTPBasicAuth

from regsync.errors import RegistryError
from regsync.http import make_session, retry_policy
from regsync.oci.client import RegistryClient
from regsync.policy.models import Harbor

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

    def __init__(self, name: str, base: str, credentials, ca_file=None, settings: Harbor | None = None):
        self.name, self.base = name, base.rstrip("/")
        self.settings = settings or Harbor()
        self.session = make_session(ca_file, 4, retry_policy(3, 0.5))
        if credentials is not None:
            self.session.auth = HTTPBasicAuth(credentials.username, credentials.password)
        self._username = credentials.username if credentials else None
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, project: str) -> None:
        if not self.settings.create_projects:
            return  # the project is the operator's business; Harbor's own denial names it
        with self._lock:  # one check (and at most one creation) per project per run
            if project in self._ready:
                return
            if not self.exists(project):
                self.create(project)
            self._ready.add(project)

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

    def _call(self, method: str, path: str, project: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.SSLError:
            raise RegistryError(self._ref(project), None, "TLS verification failed for Harbor's API "
                                                          "(set tls.ca_file to its CA)") from None
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
    """A registry client whose first write into a project makes sure the project exists."""

    def __init__(self, name: str, url: str, credentials=None, ca_file=None, *, harbor: Harbor | None = None,
                 **options):
        super().__init__(name, url, credentials, ca_file, **options)
        self.projects = HarborProjects(name, self.base, credentials, ca_file, harbor)

    def upload_blob(self, repo, descriptor, reader, checkpoint=None):
        self.projects.ensure(project_of(repo))
        return super().upload_blob(repo, descriptor, reader, checkpoint=checkpoint)

    def mount_blob(self, repo, digest, from_repo):
        self.projects.ensure(project_of(repo))
        return super().mount_blob(repo, digest, from_repo)

    def put_manifest(self, repo, reference, manifest):
        self.projects.ensure(project_of(repo))
        return super().put_manifest(repo, reference, manifest)
