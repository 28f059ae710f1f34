"""Loopback Supabase: Storage object routes and a PostgREST table, as the real supabase-py calls them.

Follows shared/docs/provider-contracts.md section 5 and the storage server's routes:
- POST   /storage/v1/object/{bucket}/{key}          multipart `file` (+ `cacheControl`, `metadata`), header x-upsert;
  a taken key answers HTTP 400 {"statusCode": "409", "error": "Duplicate", ...}
- GET    /storage/v1/object/{bucket}/{key}          authenticated download
- GET    /storage/v1/object/info/{bucket}/{key}     object info; user metadata under "metadata"
- GET/HEAD /storage/v1/object/public/{bucket}/{key} public download (public buckets only)
- POST   /storage/v1/object/sign/{bucket}/{key}     {"expiresIn"} -> {"signedURL": "/object/sign/...?token=..."}
- GET    /storage/v1/object/sign/{bucket}/{key}?token=...  (400 InvalidJWT once expired: `expire_signed_urls()`)
- DELETE /storage/v1/object/{bucket}                {"prefixes": [keys]} -> the removed objects
- /rest/v1/{table}: GET (select, eq./in. filters, order, limit, offset), POST (Prefer resolution=merge-duplicates
  + on_conflict), DELETE (filters). The table lives in an in-memory SQLite database built from the shipped
  schema, so CHECK/NOT NULL constraints and one-request-one-transaction behave like PostgreSQL's.
Missing object: HTTP 400 {"statusCode": "404", "error": "not_found"}. Bad apikey/Authorization: 401 from the gateway.
Private buckets (`public_buckets` without them): the public route answers 400 {"statusCode": "404"}; the
authenticated download and signed URLs (until they expire) work.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from imagegen.catalog.base import schema_sql
from tests.emulators.common import Faults, RecordedCall, parse_multipart, record

_JSON_COLUMNS = {"gates", "metadata"}
_SQLSTATE_FOR = (("CHECK constraint", "23514", 400), ("NOT NULL constraint", "23502", 400), ("UNIQUE constraint", "23505", 409))


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    cache_control: str
    metadata: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


def _storage_error(status: str, error: str, message: str, http_status: int = 400) -> JSONResponse:
    return JSONResponse({"statusCode": status, "error": error, "message": message}, status_code=http_status)


def _not_found() -> JSONResponse:
    return _storage_error("404", "not_found", "Object not found")


class SupabaseEmulator:
    def __init__(self, key: str = "sb-SENTINEL", buckets: tuple[str, ...] = ("media-assets",),
                 public_buckets: tuple[str, ...] | None = None, max_upload_bytes: int = 50 * 1024 * 1024):
        self.key = key
        self.buckets = set(buckets)
        self.public_buckets = set(buckets if public_buckets is None else public_buckets)
        self.max_upload_bytes = max_upload_bytes
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.signed_tokens: dict[str, tuple[str, str, float]] = {}  # token -> (bucket, key, expires at)
        self.faults = Faults()
        self.calls: list[RecordedCall] = []
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(schema_sql("sqlite"))
        self.db_lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/storage/v1/object/public/{bucket}/{key:path}", self.public_object, methods=["GET", "HEAD"]),
            Route("/storage/v1/object/info/{bucket}/{key:path}", self.object_info, methods=["GET"]),
            Route("/storage/v1/object/sign/{bucket}/{key:path}", self.signed, methods=["GET", "POST"]),
            Route("/storage/v1/object/{bucket}/{key:path}", self.object, methods=["GET", "POST"]),
            Route("/storage/v1/object/{bucket}", self.remove, methods=["DELETE"]),
            Route("/rest/v1/{table}", self.rest, methods=["GET", "POST", "DELETE"]),
        ])
        self.app.add_middleware(_Gate, emulator=self)

    # -- helpers ---------------------------------------------------------------------------------

    def expire_signed_urls(self) -> None:
        """Every signed URL handed out so far is past its expiry from now on."""
        self.signed_tokens = {t: (b, k, 0.0) for t, (b, k, _) in self.signed_tokens.items()}

    def calls_to(self, method: str, path_prefix: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def authorized(self, request: Request) -> bool:
        return (request.headers.get("apikey") == self.key
                and request.headers.get("authorization") == f"Bearer {self.key}")

    def _object_or_none(self, request: Request) -> StoredObject | None:
        return self.objects.get((request.path_params["bucket"], request.path_params["key"]))

    @staticmethod
    def _serve(obj: StoredObject) -> Response:
        return Response(obj.data, media_type=obj.content_type,
                        headers={"cache-control": f"max-age={obj.cache_control}", "etag": f'"{obj.id}"'})

    # -- storage ---------------------------------------------------------------------------------

    async def object(self, request: Request) -> Response:
        if request.method == "GET":
            obj = self._object_or_none(request)
            return self._serve(obj) if obj else _not_found()
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        if bucket not in self.buckets:
            return _storage_error("404", "Bucket not found", "Bucket not found")
        body = await request.body()
        if len(body) > self.max_upload_bytes:
            return _storage_error("413", "Payload too large", "The object exceeded the maximum allowed size", 413)
        parts = parse_multipart(body, request.headers.get("content-type", ""))
        upsert = request.headers.get("x-upsert", "false").lower() == "true"
        if (bucket, key) in self.objects and not upsert:
            return _storage_error("409", "Duplicate", "The resource already exists")
        file_part = parts["file"]
        metadata = json.loads(parts["metadata"].data) if "metadata" in parts else {}
        cache_control = parts["cacheControl"].data.decode() if "cacheControl" in parts else "3600"
        obj = StoredObject(file_part.data, file_part.content_type or "text/plain;charset=UTF-8", cache_control, metadata)
        self.objects[(bucket, key)] = obj
        return JSONResponse({"Id": obj.id, "Key": f"{bucket}/{key}"})

    async def object_info(self, request: Request) -> Response:
        obj = self._object_or_none(request)
        if obj is None:
            return _not_found()
        return JSONResponse({
            "id": obj.id, "name": request.path_params["key"], "version": obj.id,
            "bucket_id": request.path_params["bucket"], "size": len(obj.data), "content_type": obj.content_type,
            "cache_control": f"max-age={obj.cache_control}", "etag": f'"{obj.id}"', "metadata": obj.metadata,
            "last_modified": obj.created_at, "created_at": obj.created_at})

    async def public_object(self, request: Request) -> Response:
        obj = self._object_or_none(request)
        if obj is None or request.path_params["bucket"] not in self.public_buckets:
            return _not_found()
        return self._serve(obj)

    async def signed(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        if request.method == "POST":
            if (bucket, key) not in self.objects:
                return _not_found()
            token = secrets.token_urlsafe(16)
            expires_in = float((await request.json()).get("expiresIn", 60))
            self.signed_tokens[token] = (bucket, key, time.time() + expires_in)
            return JSONResponse({"signedURL": f"/object/sign/{bucket}/{key}?token={token}"})
        signed = self.signed_tokens.get(request.query_params.get("token", ""))
        if signed is None or signed[:2] != (bucket, key):
            return _storage_error("400", "InvalidJWT", "invalid signature")
        if time.time() >= signed[2]:
            return _storage_error("400", "InvalidJWT", '"exp" claim timestamp check failed')
        obj = self.objects.get((bucket, key))
        return self._serve(obj) if obj else _not_found()

    async def remove(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        removed = []
        for key in (await request.json()).get("prefixes", []):
            obj = self.objects.pop((bucket, key), None)
            if obj is not None:
                removed.append({"name": key, "bucket_id": bucket, "id": obj.id})
        return JSONResponse(removed)

    # -- PostgREST -------------------------------------------------------------------------------

    def columns(self) -> list[str]:
        return [r["name"] for r in self.db.execute("PRAGMA table_info(media_assets)")]

    def table_rows(self) -> list[dict[str, Any]]:
        with self.db_lock:
            return [self._record(r) for r in self.db.execute("SELECT * FROM media_assets")]

    @staticmethod
    def _record(row: sqlite3.Row) -> dict[str, Any]:
        record = dict(row)
        for column in _JSON_COLUMNS:
            record[column] = json.loads(record[column])
        return record

    async def rest(self, request: Request) -> Response:
        if request.path_params["table"] != "media_assets":
            return _rest_error(404, "42P01", 'relation "public.media_assets" does not exist')
        try:
            where, params = self._where(request)
        except ValueError as exc:
            return _rest_error(400, "PGRST100", str(exc))
        prefer = request.headers.get("prefer", "")
        if request.method == "GET":
            return self._select(request, where, params)
        if request.method == "DELETE":
            with self.db_lock:
                rows = [self._record(r) for r in self.db.execute(f"SELECT * FROM media_assets {where}", params)]
                self.db.execute(f"DELETE FROM media_assets {where}", params)
            return JSONResponse(rows) if "return=representation" in prefer else Response(status_code=204)
        return self._insert(request, json.loads(await request.body()), prefer)

    def _where(self, request: Request) -> tuple[str, list[Any]]:
        columns = set(self.columns())
        clauses, params = [], []
        for name, value in request.query_params.multi_items():
            if name in {"select", "order", "limit", "offset", "on_conflict", "columns"}:
                continue
            if name not in columns:
                raise ValueError(f"column media_assets.{name} does not exist")
            op, _, operand = value.partition(".")
            if op == "eq":
                clauses.append(f"{name} = ?")
                params.append(operand)
            elif op == "in":
                values = _parse_in_list(operand)
                clauses.append(f"{name} IN ({', '.join('?' * len(values))})")
                params += values
            else:
                raise ValueError(f"operator {op!r} is not emulated")
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _select(self, request: Request, where: str, params: list[Any]) -> Response:
        columns = set(self.columns())
        order = []
        for item in ",".join(request.query_params.getlist("order")).split(","):
            column, _, direction = item.partition(".")
            if column in columns:
                order.append(f"{column} {'DESC' if direction.startswith('desc') else 'ASC'}")
        sql = f"SELECT * FROM media_assets {where}" + (f" ORDER BY {', '.join(order)}" if order else "")
        sql += f" LIMIT {int(request.query_params.get('limit', -1))} OFFSET {int(request.query_params.get('offset', 0))}"
        with self.db_lock:
            return JSONResponse([self._record(r) for r in self.db.execute(sql, params)])

    def _insert(self, request: Request, payload: Any, prefer: str) -> Response:
        rows = payload if isinstance(payload, list) else [payload]
        known = set(self.columns())
        conflict = [c for c in request.query_params.get("on_conflict", "").split(",") if c]
        merge = "resolution=merge-duplicates" in prefer
        with self.db_lock:
            self.db.execute("BEGIN")  # one request, one transaction: all rows or none
            try:
                for row in rows:
                    unknown = set(row) - known
                    if unknown:
                        raise _RestRefusal(400, "PGRST204", f"Could not find the {sorted(unknown)[0]!r} column")
                    cols = list(row)
                    sql = f"INSERT INTO media_assets ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                    if merge and conflict:
                        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in conflict)
                        sql += f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}"
                    self.db.execute(sql, [json.dumps(row[c]) if c in _JSON_COLUMNS else row[c] for c in cols])
                self.db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self.db.execute("ROLLBACK")
                code, status = next(((c, s) for text, c, s in _SQLSTATE_FOR if text in str(exc)), ("23000", 400))
                return _rest_error(status, code, f'new row for relation "media_assets" violates: {exc}')
            except _RestRefusal as exc:
                self.db.execute("ROLLBACK")
                return _rest_error(exc.status, exc.code, exc.message)
        if "return=representation" in prefer:
            return JSONResponse(rows, status_code=201)
        return Response(status_code=201)


class _RestRefusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _rest_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": None, "hint": None}, status_code=status)


def _parse_in_list(operand: str) -> list[str]:
    """PostgREST's in.(a,"b,c") list: comma-separated, double quotes with backslash escapes."""
    if not (operand.startswith("(") and operand.endswith(")")):
        raise ValueError(f"bad in list {operand!r}")
    return [_unquote(m) for m in re.findall(r'"(?:[^"\\]|\\.)*"|[^,]+', operand[1:-1])]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


class _Gate:
    """ASGI middleware: records every request, applies the switched-on faults, checks the API key
    (public and signed downloads are anonymous, as on Supabase)."""

    def __init__(self, app, emulator: SupabaseEmulator):
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        body = await record(self.emulator.calls, request)
        response = await self.emulator.faults.answer()
        anonymous = "/object/public/" in scope["path"] or (
            "/object/sign/" in scope["path"] and scope["method"] in ("GET", "HEAD"))
        if response is None and not anonymous and not self.emulator.authorized(request):
            response = JSONResponse({"message": "Invalid API key",
                                     "hint": "Double check your Supabase `anon` or `service_role` API key."},
                                    status_code=401)
        if response is not None:
            return await response(scope, receive, send)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
