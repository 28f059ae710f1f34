"""Loopback GitLab: the project, Markdown uploads and generic package routes python-gitlab calls.

Follows shared/docs/provider-contracts.md section 4 and GitLab's API docs:
- GET    /api/v4/projects/:id                       id or URL-encoded path -> {id, path_with_namespace, web_url,
                                                   permissions: {project_access: {access_level}, group_access}}
- GET    /api/v4/user                               {id, username, is_admin}
- POST   /api/v4/projects/:id/uploads               multipart `file` -> 201 {id, alt, url, full_path, markdown}
- DELETE /api/v4/projects/:id/uploads/:upload_id    and /uploads/:secret/:filename (GitLab 17.2+)
- GET    /api/v4/projects/:id/uploads/:upload_id    and /uploads/:secret/:filename (17.2+ / 17.4+): the file
- GET/HEAD /-/project/:id/uploads/:secret/:name     (full_path, GitLab 17.1+) and web_url + url
- PUT    /api/v4/projects/:id/packages/generic/:name/:version/:file   raw body; GET/HEAD download the newest
- GET    /api/v4/projects/:id/packages              filters package_type, package_name (fuzzy), package_version
- GET    /api/v4/projects/:id/packages/:pid/package_files   [{id, file_name, size, file_sha256, ...}]
- DELETE /api/v4/projects/:id/packages/:pid/package_files/:fid
API routes need the PRIVATE-TOKEN header (401 otherwise); file downloads of the public project are anonymous.
`private = True` makes the project private: an anonymous upload download is redirected (302) to the
sign-in page (an HTML 200, as on GitLab), and a package file download without the token answers 404.
Routing reads the raw path because project paths arrive URL-encoded ('grp%2Fproj').
`full_path_style`: "17.1" (default), "legacy" ('/<namespace>/<project>/uploads/...') or "absent" (no full_path).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.emulators.common import Faults, RecordedCall, parse_multipart, record

PROJECT_ID = 4242
PROJECT_PATH = "marketing/media-assets"


@dataclass
class Upload:
    id: int
    secret: str
    filename: str
    data: bytes


@dataclass
class PackageFile:
    id: int
    package_id: int
    file_name: str
    data: bytes
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def as_json(self, with_sha256: bool) -> dict[str, Any]:
        return {"id": self.id, "package_id": self.package_id, "file_name": self.file_name, "size": len(self.data),
                "file_md5": hashlib.md5(self.data).hexdigest(), "file_sha1": hashlib.sha1(self.data).hexdigest(),
                "file_sha256": hashlib.sha256(self.data).hexdigest() if with_sha256 else None,
                "created_at": self.created_at}


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class GitLabEmulator:
    def __init__(self, token: str = "glpat-SENTINEL", max_attachment_bytes: int = 100 * 1024 * 1024,
                 full_path_style: str = "17.1", report_sha256: bool = True):
        self.token = token
        self.max_attachment_bytes = max_attachment_bytes
        self.full_path_style = full_path_style
        self.report_sha256 = report_sha256
        # the token's role in the project, as `permissions.project_access` says (None: not a member)
        self.access_level: int | None = 40
        self.is_admin = False  # what GET /user says of the token's user
        self.private = False  # see the module docstring
        self.uploads: dict[int, Upload] = {}
        self.packages: dict[int, tuple[str, str]] = {}  # package id -> (name, version)
        self.package_files: dict[int, PackageFile] = {}
        self.faults = Faults()
        self.calls: list[RecordedCall] = []
        self._ids = itertools.count(1)
        self._routes = [
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)$"), self.get_project, True),
            ("GET", re.compile(r"^/api/v4/user$"), self.get_user, True),
            ("POST", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/uploads$"), self.create_upload, True),
            ("DELETE", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/uploads/(?P<upload_id>\d+)$"),
             self.delete_upload, True),
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/uploads/(?P<upload_id>\d+)$"),
             self.download_upload, True),
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/uploads/(?P<secret>[0-9a-f]{32})/"
                               r"(?P<filename>[^/]+)$"), self.download_upload, True),
            ("DELETE", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/uploads/(?P<secret>[0-9a-f]{32})/"
                                  r"(?P<filename>[^/]+)$"), self.delete_upload, True),
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/packages$"), self.list_packages, True),
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/packages/(?P<package_id>\d+)/package_files$"),
             self.list_package_files, True),
            ("DELETE", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/packages/(?P<package_id>\d+)/"
                                  r"package_files/(?P<file_id>\d+)$"), self.delete_package_file, True),
            ("PUT", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/packages/generic/(?P<name>[^/]+)/"
                               r"(?P<version>[^/]+)/(?P<file_name>[^/]+)$"), self.put_package_file, True),
            ("GET", re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/packages/generic/(?P<name>[^/]+)/"
                               r"(?P<version>[^/]+)/(?P<file_name>[^/]+)$"), self.get_package_file, False),
            ("GET", re.compile(r"^/-/project/(?P<project>\d+)/uploads/(?P<secret>[0-9a-f]{32})/(?P<filename>[^/]+)$"),
             self.serve_upload, False),
            ("GET", re.compile(r"^/users/sign_in$"), self.sign_in_page, False),
            ("GET", re.compile(r"^/(?P<namespace>.+)/uploads/(?P<secret>[0-9a-f]{32})/(?P<filename>[^/]+)$"),
             self.serve_upload, False),
        ]

    # -- ASGI ------------------------------------------------------------------------------------

    @property
    def app(self) -> "GitLabEmulator":
        """The ASGI app to serve (the emulator itself: uvicorn needs an object with an async __call__)."""
        return self

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await record(self.calls, request)
        response = await self.faults.answer() or await self._route(request, body)
        await response(scope, receive, send)

    async def _route(self, request: Request, body: bytes) -> Response:
        raw_path = request.scope.get("raw_path", b"").decode() or request.url.path
        method = "GET" if request.method == "HEAD" else request.method
        for verb, pattern, handler, needs_token in self._routes:
            match = pattern.match(raw_path.split("?", 1)[0])
            if verb != method or not match:
                continue
            if needs_token and request.headers.get("private-token") != self.token:
                return _message(401, "401 Unauthorized")
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            if "project" in params and params["project"] not in (str(PROJECT_ID), PROJECT_PATH):
                return _message(404, "404 Project Not Found")
            return handler(request, body, **params)
        return _message(404, "404 Not Found")

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def calls_to(self, method: str, path_part: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and path_part in c.path]

    # -- project and uploads ---------------------------------------------------------------------

    def get_user(self, request: Request, body: bytes) -> Response:
        return JSONResponse({"id": 1, "username": "publisher", "is_admin": self.is_admin})

    def get_project(self, request: Request, body: bytes, project: str) -> Response:
        access = None if self.access_level is None else {"access_level": self.access_level,
                                                          "notification_level": 3}
        return JSONResponse({"id": PROJECT_ID, "path_with_namespace": PROJECT_PATH, "name": "media-assets",
                             "web_url": f"{self.base_url(request)}/{PROJECT_PATH}",
                             "permissions": {"project_access": access, "group_access": None}})

    def create_upload(self, request: Request, body: bytes, project: str) -> Response:
        if len(body) > self.max_attachment_bytes:
            return _message(413, "413 Request Entity Too Large")
        part = parse_multipart(body, request.headers.get("content-type", "")).get("file")
        if part is None or not part.filename:
            return _message(400, "400 Bad request - file is missing")
        upload = Upload(next(self._ids), secrets.token_hex(16), part.filename, part.data)
        self.uploads[upload.id] = upload
        url = f"/uploads/{upload.secret}/{upload.filename}"
        answer = {"id": upload.id, "alt": upload.filename.rsplit(".", 1)[0], "url": url,
                  "markdown": f"![{upload.filename.rsplit('.', 1)[0]}]({url})"}
        if self.full_path_style == "17.1":
            answer["full_path"] = f"/-/project/{PROJECT_ID}{url}"
        elif self.full_path_style == "legacy":
            answer["full_path"] = f"/{PROJECT_PATH}{url}"
        return JSONResponse(answer, status_code=201)

    def _find_upload(self, secret: str, filename: str) -> Upload | None:
        return next((u for u in self.uploads.values() if u.secret == secret and u.filename == filename), None)

    def serve_upload(self, request: Request, body: bytes, secret: str, filename: str, project: str = "",
                     namespace: str = "") -> Response:
        if namespace and namespace != PROJECT_PATH:
            return _message(404, "404 Not Found")
        if self.private and not self._has_token(request):
            return Response(status_code=302, headers={"location": f"{self.base_url(request)}/users/sign_in"})
        upload = self._find_upload(secret, filename)
        if upload is None:
            return _message(404, "404 Not Found")
        return self._file(upload)

    @staticmethod
    def _file(upload: Upload) -> Response:
        return Response(upload.data, media_type="image/png" if upload.filename.endswith(".png")
                        else "application/octet-stream")

    def _has_token(self, request: Request) -> bool:
        return request.headers.get("private-token") == self.token

    def sign_in_page(self, request: Request, body: bytes) -> Response:
        return Response("<!DOCTYPE html><html><body>Sign in</body></html>", media_type="text/html")

    def download_upload(self, request: Request, body: bytes, project: str, upload_id: str = "", secret: str = "",
                        filename: str = "") -> Response:
        upload = self.uploads.get(int(upload_id)) if upload_id else self._find_upload(secret, filename)
        if upload is None:
            return _message(404, "404 Upload Not Found")
        return self._file(upload)

    def delete_upload(self, request: Request, body: bytes, project: str, upload_id: str = "", secret: str = "",
                      filename: str = "") -> Response:
        upload = self.uploads.get(int(upload_id)) if upload_id else self._find_upload(secret, filename)
        if upload is None:
            return _message(404, "404 Upload Not Found")
        del self.uploads[upload.id]
        return Response(status_code=204)

    # -- generic packages ------------------------------------------------------------------------

    def _package_id(self, name: str, version: str, create: bool) -> int | None:
        found = next((pid for pid, nv in self.packages.items() if nv == (name, version)), None)
        if found is None and create:
            found = next(self._ids)
            self.packages[found] = (name, version)
        return found

    def put_package_file(self, request: Request, body: bytes, project: str, name: str, version: str,
                         file_name: str) -> Response:
        if len(body) > self.max_attachment_bytes:
            return _message(413, "413 Request Entity Too Large")
        package_file = PackageFile(next(self._ids), self._package_id(name, version, create=True), file_name, body)
        self.package_files[package_file.id] = package_file
        if request.query_params.get("select") == "package_file":
            return JSONResponse(package_file.as_json(self.report_sha256), status_code=201)
        return JSONResponse({"message": "201 Created"}, status_code=201)

    def get_package_file(self, request: Request, body: bytes, project: str, name: str, version: str,
                         file_name: str) -> Response:
        if self.private and not self._has_token(request):
            return _message(404, "404 Project Not Found")
        package_id = self._package_id(name, version, create=False)
        files = [f for f in self.package_files.values() if f.package_id == package_id and f.file_name == file_name]
        if not files:
            return _message(404, "404 Package Not Found")
        return Response(max(files, key=lambda f: f.id).data, media_type="application/octet-stream")

    def list_packages(self, request: Request, body: bytes, project: str) -> Response:
        query = {k: v[-1] for k, v in parse_qs(request.url.query).items()}
        answer = []
        for package_id, (name, version) in self.packages.items():
            if query.get("package_type", "generic") != "generic":
                continue
            if query.get("package_name") and query["package_name"] not in name:  # fuzzy, as on GitLab
                continue
            if query.get("package_version") and query["package_version"] != version:
                continue
            answer.append({"id": package_id, "name": name, "version": version, "package_type": "generic",
                           "status": "default"})
        return JSONResponse(answer)

    def list_package_files(self, request: Request, body: bytes, project: str, package_id: str) -> Response:
        if int(package_id) not in self.packages:
            return _message(404, "404 Package Not Found")
        return JSONResponse([f.as_json(self.report_sha256) for f in self.package_files.values()
                             if f.package_id == int(package_id)])

    def delete_package_file(self, request: Request, body: bytes, project: str, package_id: str,
                            file_id: str) -> Response:
        package_file = self.package_files.get(int(file_id))
        if package_file is None or package_file.package_id != int(package_id):
            return _message(404, "404 Package File Not Found")
        del self.package_files[package_file.id]
        return Response(status_code=204)
