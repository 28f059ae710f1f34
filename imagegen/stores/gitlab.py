"""GitLab as an asset store (seed 000: images over 2 MB), over python-gitlab.

Two modes, because GitLab has two ways to hold a file and only one of them is addressable by our key:

- ``uploads`` (the seed's way, default): `POST /projects/:id/uploads` returns
  `{id, alt, url: "/uploads/<secret>/name", full_path: "/-/project/<id>/uploads/<secret>/name", markdown}`.
  The URL carries a random secret, so GitLab cannot tell us what lives under *our* key. The store keeps
  a key -> (url, sha256, upload id) `UploadIndex` (imagegen.stores.gitlab_index): a JSON file in the run's
  output folder, the catalog's rows, or the `gitlab_uploads` table of a PostgreSQL catalog, which every
  worker shares and whose claim makes two workers' puts of one file a single upload. Without a persistent
  index a rerun uploads again (a new secret, never an overwrite) and the old upload is an orphan.
  Delete uses `DELETE /projects/:id/uploads/:upload_id` or
  `DELETE /projects/:id/uploads/:secret/:filename` (GitLab 17.2+), tolerating 404.
- ``generic_packages``: `PUT /projects/:id/packages/generic/:package/:version/:file` where the path IS
  the key (version = campaign, file = the rest of the key joined by "__"). GitLab records each file's
  sha256 (`GET /projects/:id/packages/:package_id/package_files` -> `file_sha256`), so existence and
  content are known without an index: real idempotence across machines. Consumers fetch
  `/api/v4/projects/:id/packages/generic/...` (anonymous only for public projects).

The absolute upload URL is `base_url + full_path` (GitLab 17.1+; older servers also return a path from
the instance root) and `project.web_url + url` when no `full_path` came back (there is no `markdown_url`).
The pre-flight writes nothing: it reads the project, whose `permissions` give the token's role in it
(project or group membership), and asks for Developer or above, which uploads and package files need.

Reading a file back (`read_into`) goes through the API with the token, so a private project works:
`GET /projects/:id/uploads/:upload_id` (GitLab 17.2+) or `/uploads/:secret/:filename` (17.4+) when the
index has no upload id, and the generic package file route with the token in that mode. The upload's own
URL would redirect an anonymous reader of a private project to the sign-in page.

The project is resolved by numeric id or a non-lazy get: a lazy get by path double-encodes on upload.
python-gitlab retries 429 honouring Retry-After and, with `retry_transient_errors=True`, 5xx and
timeouts; every call here passes `max_retries` so a dead server fails in bounded time. Markdown uploads
are the exception: python-gitlab 8.x replays the same, already consumed, MultipartEncoder on a retry,
so the server waits for a body that never comes (a read timeout per attempt). Uploads therefore make
one attempt per python-gitlab call and this module retries them itself with a fresh body, honouring
Retry-After (read from the response through a session hook) the way python-gitlab does.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import requests
from gitlab.const import RETRYABLE_TRANSIENT_ERROR_CODES
from gitlab.exceptions import GitlabAuthenticationError, GitlabError

from imagegen.errors import StoreError, TransientStoreError
from imagegen.models import StoredObject, sha256_file
from imagegen.redaction import mask_url, url_secrets
from imagegen.stores.base import AssetStore, BinarySink
from imagegen.stores.gitlab_index import (  # noqa: F401 - the index classes' historic home
    CatalogUploadIndex,
    JsonFileUploadIndex,
    UploadIndex,
    UploadRecord,
)
from imagegen.stores.remote import error_for_status, head_ok, is_sha256_hex, sha256_bytes, short_server_message

GitLabMode = Literal["uploads", "generic_packages"]
DEFAULT_PACKAGE_NAME = "imagegen-assets"
_UPLOAD_URL_TAIL = re.compile(r"/uploads/(?P<secret>[0-9a-f]{32})/(?P<filename>[^/?#]+)$")
MAX_RETRY_AFTER_SECONDS = 120.0
DEVELOPER_ACCESS = 30  # GitLab's access level of the Developer role: uploads and package files need it
_ROLE_NAMES = {0: "no access", 5: "Minimal Access", 10: "Guest", 15: "Planner", 20: "Reporter"}


# -- URL and key helpers ---------------------------------------------------------------------------

def absolute_upload_url(upload: dict[str, Any], base_url: str, web_url: str | None) -> str:
    """The URL a consumer opens for a project upload (see the module docstring for the two forms)."""
    if upload.get("full_path"):
        return base_url.rstrip("/") + upload["full_path"]
    if web_url and upload.get("url"):
        return web_url.rstrip("/") + upload["url"]
    raise StoreError("GitLab upload answer has neither full_path nor url")


def upload_filename(key: str) -> str:
    """The file name GitLab shows for an upload: the key flattened, so it still says what it is."""
    return key.replace("/", "_")


def package_coordinates(key: str) -> tuple[str, str]:
    """(version, file name) of `key` in generic-packages mode: the campaign, and the rest joined by '__'."""
    version, _, rest = key.partition("/")
    parts = rest.split("/") if rest else []
    if not version or not parts or any(not p or "__" in p for p in parts):
        raise StoreError(f"store key {key!r} cannot be a generic package path: it needs "
                         "'<campaign>/<name>...' with no '__' after the campaign")
    return version, "__".join(parts)


def access_level(permissions: Any) -> int | None:
    """The token's highest access level in a project from its `permissions` answer (None: not a member)."""
    if not isinstance(permissions, dict):
        return None
    levels = [access.get("access_level") for access in (permissions.get("project_access"),
                                                         permissions.get("group_access"))
              if isinstance(access, dict)]
    known = [level for level in levels if isinstance(level, int)]
    return max(known) if known else None


# -- the store -------------------------------------------------------------------------------------

class GitLabUploadStore(AssetStore):
    """Files in one GitLab project, as project uploads (default) or generic package files."""

    def __init__(self, gl: Any, project: int | str, *, mode: GitLabMode = "uploads",
                 package_name: str = DEFAULT_PACKAGE_NAME, index: UploadIndex | None = None,
                 name: str = "gitlab", max_retries: int = 3, head_timeout: float = 10.0):
        """`gl` is a ready `gitlab.Gitlab`; `project` a numeric id or a 'group/project' path."""
        if mode not in ("uploads", "generic_packages"):
            raise StoreError(f"unknown GitLab store mode {mode!r}: use 'uploads' or 'generic_packages'")
        self.gl = gl
        self.project_ref = project
        self.mode = mode
        self.package_name = package_name
        self.index: UploadIndex = index if index is not None else JsonFileUploadIndex()
        self.name = name
        self.max_retries = max_retries
        self.head_timeout = head_timeout
        self._project: Any = None
        self._last_answer = threading.local()
        session = getattr(gl, "session", None)
        if session is not None and hasattr(session, "hooks"):
            session.hooks.setdefault("response", []).append(self._remember_retry_after)

    # -- plumbing --------------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        return f"GitLab project {self.project_ref!r}" + (f", key {key!r}" if key else "")

    def _error(self, exc: Exception, action: str, key: str, size: int | None = None) -> StoreError:
        """Map python-gitlab/requests failures; messages never carry the token."""
        where = self._where(key)
        if isinstance(exc, requests.RequestException):
            return TransientStoreError(f"{action} {where}: transport error ({type(exc).__name__})")
        if not isinstance(exc, GitlabError):
            return StoreError(f"{action} {where}: {type(exc).__name__}")
        code = exc.response_code
        if isinstance(exc, GitlabAuthenticationError) or code == 401:
            return StoreError(f"{action} {where}: GitLab rejected the token (HTTP 401); check GITLAB_TOKEN")
        if code == 403:
            return StoreError(f"{action} {where}: the token may not do this (HTTP 403); it needs the api scope "
                              "and at least Developer access (Maintainer to delete uploads)")
        if code == 413:
            size_text = f"{size} bytes" if size is not None else "this size"
            return StoreError(f"{action} {where}: file of {size_text} is over the GitLab instance's "
                              "attachment limit (HTTP 413)")
        secrets = [getattr(self.gl, "private_token", None), *url_secrets(getattr(self.gl, "url", None))]
        detail = short_server_message(exc.error_message, secrets)
        return error_for_status(code, f"{action} {where}: HTTP {code}: {detail}")

    def _call(self, action: str, key: str, fn, *args, size: int | None = None, **kwargs):
        """Run one python-gitlab call with bounded retries, mapping its failures to StoreError."""
        try:
            return fn(*args, max_retries=self.max_retries, **kwargs)
        except (GitlabError, requests.RequestException) as exc:
            raise self._error(exc, action, key, size) from exc

    def _remember_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_answer.retry_after = response.headers.get("Retry-After")

    def _upload_retry_wait(self, exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying a Markdown upload, or None when it must not be retried."""
        if attempt >= self.max_retries:
            return None
        backoff = 0.1 * 2 ** attempt  # python-gitlab's own schedule
        if isinstance(exc, requests.RequestException):
            return backoff if getattr(self.gl, "retry_transient_errors", False) else None
        code = getattr(exc, "response_code", None)
        if code == 429:
            retry_after = getattr(self._last_answer, "retry_after", None)
            try:
                return min(float(retry_after), MAX_RETRY_AFTER_SECONDS) if retry_after else backoff
            except ValueError:  # an HTTP date: not worth parsing for uploads
                return backoff
        if code in RETRYABLE_TRANSIENT_ERROR_CODES and getattr(self.gl, "retry_transient_errors", False):
            return backoff
        return None

    def _upload_once_per_body(self, key: str, filename: str, data: bytes) -> dict[str, Any]:
        """`project.upload` with a fresh multipart body per attempt (see the module docstring)."""
        project = self.project()
        attempt = 0
        while True:
            try:
                return project.upload(filename, filedata=data, max_retries=0)
            except (GitlabError, requests.RequestException) as exc:
                wait = self._upload_retry_wait(exc, attempt)
                if wait is None:
                    raise self._error(exc, "uploading", key, len(data)) from exc
            time.sleep(wait)
            attempt += 1

    def project(self) -> Any:
        """The project, fetched once with a non-lazy get (by id or by path)."""
        if self._project is None:
            ref = self.project_ref
            ref = int(ref) if isinstance(ref, str) and ref.isdigit() else ref
            self._project = self._call("opening", "", self.gl.projects.get, ref)
        return self._project

    def _api(self, suffix: str) -> str:
        return f"/projects/{self.project().get_id()}{suffix}"

    # -- AssetStore primitives -------------------------------------------------------------------

    def stored_sha256(self, key: str) -> str | None:
        if self.mode == "uploads":
            record = self.index.get(key)
            return record.sha256 if record else None
        files = self._package_files(key)
        if not files:
            return None
        newest = max(files, key=lambda f: f["id"])  # GitLab serves the newest of same-named files
        recorded = newest.get("file_sha256")
        return recorded if is_sha256_hex(recorded) else self._download_sha256(key)

    def put_file(self, key: str, path: Path, content_type: str, sha256: str | None = None, *,
                 replace: bool = False) -> StoredObject:
        """AssetStore.put_file under the index's claim on `key` (uploads mode): a worker that uploads the same
        file at the same time waits, then finds this upload instead of making its own."""
        if self.mode != "uploads":
            return super().put_file(key, path, content_type, sha256, replace=replace)
        with self.index.claim(key):
            return super().put_file(key, path, content_type, sha256, replace=replace)

    def write(self, key: str, path: Path, content_type: str) -> None:
        data = Path(path).read_bytes()  # python-gitlab sends bytes; files here are a few MB
        if self.mode == "uploads":
            self._write_upload(key, data, sha256_file(path))
        else:
            self._write_package_file(key, data)

    def replace(self, key: str, path: Path, content_type: str) -> None:
        """The new file first, then the old one goes: an upload gets a new secret URL (the index then
        names it), and GitLab keeps same-named package files side by side and serves the newest."""
        if self.mode == "uploads":
            old = self.index.get(key)
            self.write(key, path, content_type)
            if old is not None:
                self._delete_recorded_upload(key, old)
            return
        older = self._package_files(key)
        self.write(key, path, content_type)
        for package_file in older:
            self._delete_tolerating_404(
                key, self._api(f"/packages/{package_file['package_id']}/package_files/{package_file['id']}"))

    def url_for(self, key: str) -> str:
        if self.mode == "generic_packages":
            version, file_name = package_coordinates(key)
            return mask_url(f"{self.gl.api_url}/projects/{self.project().get_id()}/packages/generic/"
                            f"{quote(self.package_name, safe='')}/{quote(version, safe='')}/"
                            f"{quote(file_name, safe='')}")
        record = self.index.get(key)
        if record is None:
            raise StoreError(f"no GitLab upload is recorded for {self._where(key)}")
        return record.url

    def delete(self, key: str) -> None:
        if self.mode == "uploads":
            self._delete_upload(key)
            return
        for package_file in self._package_files(key):
            self._delete_tolerating_404(
                key, self._api(f"/packages/{package_file['package_id']}/package_files/{package_file['id']}"))

    def verify(self, key: str) -> bool:
        return head_ok(self.url_for(key), what=f"verifying {self._where(key)}", timeout=self.head_timeout)

    def read_into(self, key: str, fh: BinarySink) -> None:
        if self.mode == "generic_packages":
            version, file_name = package_coordinates(key)
            try:  # not through _call: download() has an `action` keyword of its own
                self.project().generic_packages.download(self.package_name, version, file_name, streamed=True,
                                                         action=fh.write, max_retries=self.max_retries)
            except (GitlabError, requests.RequestException) as exc:
                raise self._error(exc, "downloading", key) from exc
            return
        record = self.index.get(key)
        if record is None:
            raise StoreError(f"no GitLab upload is recorded for {self._where(key)}")
        if record.upload_id is not None:
            path = self._api(f"/uploads/{record.upload_id}")
        elif match := _UPLOAD_URL_TAIL.search(record.url):
            path = self._api(f"/uploads/{match['secret']}/{match['filename']}")
        else:
            raise StoreError(f"downloading {self._where(key)}: cannot tell the upload from its URL")
        response = self._call("downloading", key, self.gl.http_get, path, streamed=True, raw=True)
        try:
            for chunk in response.iter_content(1024 * 1024):
                fh.write(chunk)
        except requests.RequestException as exc:
            raise self._error(exc, "downloading", key) from exc
        finally:
            response.close()

    def preflight(self) -> None:
        """The project answers and the token may write to it (see the module docstring); each call makes
        `max_retries` retries at most (the block's check passes 0)."""
        level = access_level(getattr(self.project(), "permissions", None))
        if level is None and self._token_is_admin():
            return  # an administrator writes to any project without being a member
        if level is None or level < DEVELOPER_ACCESS:
            role = "it is not a member" if level is None else f"its role is {_ROLE_NAMES.get(level, level)}"
            raise StoreError(f"{self._where('')}: the token may not write to the project ({role}); it needs "
                             "at least the Developer role and the api scope")

    def _token_is_admin(self) -> bool:
        """True when the token belongs to an administrator (False when GitLab will not say)."""
        try:
            user = self.gl.http_get("/user", max_retries=self.max_retries)
        except (GitlabError, requests.RequestException):
            return False
        return isinstance(user, dict) and bool(user.get("is_admin"))

    # -- uploads mode ----------------------------------------------------------------------------

    def _write_upload(self, key: str, data: bytes, sha256: str) -> None:
        project = self.project()
        answer = self._upload_once_per_body(key, upload_filename(key), data)
        web_url = getattr(project, "web_url", None) if not answer.get("full_path") else None
        # GITLAB_URL may carry credentials: the URL that is recorded and published never does
        url = mask_url(absolute_upload_url(answer, self.gl.url, web_url))
        self.index.put(key, UploadRecord(url=url, sha256=sha256, upload_id=answer.get("id")))

    def _delete_upload(self, key: str) -> None:
        record = self.index.get(key)
        if record is None:
            return
        self._delete_recorded_upload(key, record)
        self.index.remove(key)

    def _delete_recorded_upload(self, key: str, record: UploadRecord) -> None:
        if record.upload_id is not None:
            self._delete_tolerating_404(key, self._api(f"/uploads/{record.upload_id}"))
        elif match := _UPLOAD_URL_TAIL.search(record.url):
            self._delete_tolerating_404(key, self._api(f"/uploads/{match['secret']}/{match['filename']}"))
        else:
            raise StoreError(f"deleting {self._where(key)}: cannot tell the upload from its URL")

    def _delete_tolerating_404(self, key: str, api_path: str) -> None:
        try:
            self._call("deleting", key, self.gl.http_delete, api_path)
        except StoreError as exc:
            if isinstance(exc.__cause__, GitlabError) and exc.__cause__.response_code == 404:
                return  # already gone: rollback hooks call delete more than once
            raise

    # -- generic packages mode -------------------------------------------------------------------

    def _write_package_file(self, key: str, data: bytes) -> None:
        version, file_name = package_coordinates(key)
        self._call("uploading", key, self.project().generic_packages.upload, self.package_name, version,
                   file_name, data=data, select="package_file", size=len(data))

    def _package_files(self, key: str) -> list[dict[str, Any]]:
        """Every file stored under `key` (GitLab keeps same-named files side by side), with its package id."""
        version, file_name = package_coordinates(key)
        packages = self._call("listing packages for", key, self.gl.http_list, self._api("/packages"),
                              query_data={"package_type": "generic", "package_name": self.package_name,
                                          "package_version": version}, get_all=True)
        found = []
        # package_name is a fuzzy filter on GitLab: keep exact matches only
        for package in packages:
            if package.get("name") != self.package_name or package.get("version") != version:
                continue
            files = self._call("listing package files for", key, self.gl.http_list,
                               self._api(f"/packages/{package['id']}/package_files"), get_all=True)
            found += [dict(f, package_id=package["id"]) for f in files if f.get("file_name") == file_name]
        return found

    def _download_sha256(self, key: str) -> str:
        """Fallback when GitLab reports no sha256: hash the file itself (one full download)."""
        version, file_name = package_coordinates(key)
        data = self._call("downloading", key, self.project().generic_packages.download, self.package_name,
                          version, file_name)
        return sha256_bytes(data)
