"""Loopback emulator of the neuroflash image API (provider-contracts.md section 3, seed 004).

One Starlette app serves the token endpoint (`/oauth/v2/token`), the API under `/api`, and a
CDN-like `/storage/...` route that generated images' absolute `url`s point at. State is held on
the `NeuroflashEmulator` object so a test can read counters and set faults between calls:

    emu = NeuroflashEmulator()
    with serve_asgi(emu.app) as base:
        emu.set_fault("storm_429", count=2, retry_after=1)
        ...
        assert emu.calls["generate"] == 1

Faults (see `set_fault`): storm_429, error_5xx, slow, malformed_json, truncated_image, not_image,
wrong_content_type, expired_token, quota_403, quota_429, exhausted_quota, model_not_allowed, and the
lost answers: drop_after_accept (the image is made and charged, then the connection is dropped without
an answer) and error_after_submit (made and charged, then a 5xx, `status` 502 by default), both on the
generate route by default (`route="edit"` for edits). `paid_generations` counts charged images.
`edit_response_shape` picks which of the two plausible /edit answers is served ("images" or
"history_item"), since the real one is unconfirmed.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import re
import secrets
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.common import DroppedConnection, KeepsRawSend

WORKSPACE_ID = "ws-emulated-0001"

NANO_BANANA_2 = {
    "id": "nano-banana-2",
    "name": "Nano Banana 2",
    "provider": "fal.ai",
    "description": "Fast and efficient image generation model",
    "capabilities": ["text2image", "image2image"],
    "max_images": 4,
    "aspect_ratios": ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"],
    "output_formats": ["jpeg", "png", "webp"],
    "allowed": True,
    "order": 1,
}
SQUARE_ONLY = {
    "id": "square-lite",
    "name": "Square Lite",
    "provider": "emulator",
    "description": "Fewer aspect ratios, one image per call",
    "capabilities": ["text2image"],
    "max_images": 1,
    "aspect_ratios": ["1:1", "16:9"],
    "output_formats": ["png"],
    "allowed": True,
    "order": 2,
    "extra_field_nobody_documented": {"x": 1},
}

_PIL_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_VIEW_PATH = re.compile(r"^/api/ds-prototypes/image_generation/([^/]+)/view$")
FAULTS = frozenset({"storm_429", "error_5xx", "slow", "malformed_json", "truncated_image", "not_image",
                    "wrong_content_type", "expired_token", "quota_403", "quota_429", "exhausted_quota",
                    "model_not_allowed", "drop_after_accept", "error_after_submit"})


def _error(status: int, error: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "code": code}, status_code=status, headers=headers)


def render_image(aspect_ratio: str, output_format: str, seed_text: str, long_side: int) -> tuple[bytes, int, int]:
    """Real image bytes of the given aspect ratio (small, for speed), colour from `seed_text`."""
    aw, ah = (float(x) for x in aspect_ratio.split(":"))
    if aw >= ah:
        width, height = long_side, max(1, round(long_side * ah / aw))
    else:
        width, height = max(1, round(long_side * aw / ah)), long_side
    # shapes placed by the digest, not one fixed layout: fixed layouts share a pHash often enough
    # (1 pair in 35) to make the duplicate gate quarantine a fresh image at random
    digest = hashlib.sha256(seed_text.encode()).digest()
    im = Image.new("RGB", (width, height), tuple(digest[:3]))
    draw = ImageDraw.Draw(im)
    for i in range(4):
        x0, y0 = digest[3 + i] * width // 256, digest[7 + i] * height // 256
        draw.ellipse((x0, y0, x0 + width // 3, y0 + height // 3), fill=tuple(digest[11 + 3 * i:14 + 3 * i]))
    buf = io.BytesIO()
    im.save(buf, format=_PIL_FORMATS[output_format][0])
    return buf.getvalue(), width, height


class NeuroflashEmulator:
    """State and Starlette app of the emulated neuroflash service."""

    def __init__(self, client_id: str = "nf-client", client_secret: str = "nf-secret", *,
                 expires_in: int = 14399, available: int = 88, used: int = 12, used_daily: int = 3,
                 limit: int = 100, limit_daily: int | None = 50, image_long_side: int = 64):
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.image_long_side = image_long_side
        self.edit_response_shape = "images"
        self.quota: dict[str, Any] = {}
        self.set_quota(available=available, used=used, used_daily=used_daily, limit=limit, limit_daily=limit_daily)
        self.models = [copy.deepcopy(NANO_BANANA_2), copy.deepcopy(SQUARE_ONLY)]
        self.tokens: dict[str, float] = {}          # token -> expiry (monotonic)
        self.images: dict[str, dict[str, Any]] = {}  # image_id -> {bytes, content_type, format, ...}
        self.history: list[dict[str, Any]] = []      # newest first
        self.faults: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []     # (route, headers, json) of API calls, for assertions
        self.paid_generations = 0                    # images charged to the quota (generated and edited)
        self.app = self._build_app()

    # ---- test controls ------------------------------------------------------------------

    def run_environment(self, url: str) -> dict[str, str]:
        """The environment of a run that uses this emulator served at `url` (its credentials, its URLs, and a
        pace the tests never wait for: the real pace is tested in the client suite)."""
        return {"NEUROFLASH_CLIENT_ID": self.client_id, "NEUROFLASH_CLIENT_SECRET": self.client_secret,
                "IMAGEGEN_NEUROFLASH_API_URL": f"{url}/api", "IMAGEGEN_NEUROFLASH_TOKEN_URL": f"{url}/oauth/v2/token",
                "IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE": "6000"}

    def set_quota(self, *, available: int, used: int = 0, used_daily: int = 0, limit: int = 100,
                  limit_daily: int | None = 50, fair_use: bool = False) -> None:
        self.quota = {"id": "quota-emu-1", "workspaceId": WORKSPACE_ID, "usageTypeKey": "images",
                      "bonusAmount": 0, "spilloverAmount": 0, "usedAmount": used, "usedAmountDaily": used_daily,
                      "availableAmount": available, "limitAmount": limit, "limitAmountDaily": limit_daily,
                      "fairUseLimitReached": fair_use}

    def set_fault(self, name: str, **options: Any) -> None:
        """Switch a fault on. Common options: count (answers before it heals; default 1, or
        forever for the quota faults), route (which route it hits; default per fault)."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}")
        if name == "exhausted_quota":
            self.quota["availableAmount"] = 0
        if name == "model_not_allowed":
            for model in self.models:
                if model["id"] == options.get("model", "nano-banana-2"):
                    model["allowed"] = False
        self.faults[name] = {"name": name, **options}  # never empty, so a firing fault is truthy

    def _take_fault(self, name: str, route: str, default_route: str, default_count: int | None = 1) -> dict | None:
        """The fault's options if it fires for this route now (consuming one of its `count`)."""
        fault = self.faults.get(name)
        if fault is None or fault.get("route", default_route) not in (route, "*"):
            return None
        count = fault.get("count", default_count)
        if count is not None:
            if count <= 0:
                return None
            fault["count"] = count - 1
        return fault

    # ---- helpers ------------------------------------------------------------------------

    def _authorise(self, request: Request, route: str, need_workspace: bool = True) -> Response | None:
        """401 for a missing/unknown/expired token (or the expired_token fault), 400 without workspace."""
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        if expiry is None or time.monotonic() > expiry:
            return _error(401, "Unauthorized", "UNAUTHORIZED")
        if self._take_fault("expired_token", route, "*"):
            self.tokens.pop(token, None)
            return _error(401, "Token expired", "TOKEN_EXPIRED")
        if need_workspace and request.headers.get("x-workspace-id") != WORKSPACE_ID:
            return _error(400, "Missing or unknown x-workspace-id header", "WORKSPACE_REQUIRED")
        return None

    async def _common_faults(self, route: str) -> Response | None:
        """Faults that replace an API answer: slow, 429 storm, 5xx, quota answers."""
        slow = self._take_fault("slow", route, "generate")
        if slow:
            await asyncio.sleep(float(slow.get("seconds", 2.0)))
        storm = self._take_fault("storm_429", route, "generate")
        if storm:
            headers = {"Retry-After": str(storm["retry_after"])} if storm.get("retry_after") is not None else None
            return _error(429, "Too many requests, rate limit exceeded", "RATE_LIMITED", headers)
        if self._take_fault("error_5xx", route, "generate"):
            return _error(503, "Service temporarily unavailable", "UNAVAILABLE")
        if self._take_fault("quota_403", route, "generate", default_count=None):
            return _error(403, "Image generation limit reached for this workspace", "LIMIT_REACHED")
        if self._take_fault("quota_429", route, "generate", default_count=None):
            return _error(429, "Quota exceeded for usage type images", "QUOTA_EXCEEDED")
        return None

    def _room_for(self, n: int) -> bool:
        q = self.quota
        daily_ok = q["limitAmountDaily"] is None or q["usedAmountDaily"] + n <= q["limitAmountDaily"]
        return q["availableAmount"] >= n and daily_ok and not q["fairUseLimitReached"]

    def _spend(self, n: int) -> None:
        self.paid_generations += n
        self.quota["availableAmount"] -= n
        self.quota["usedAmount"] += n
        self.quota["usedAmountDaily"] += n

    def _make_image(self, request: Request, *, aspect_ratio: str, output_format: str, prompt: str,
                    batch_id: str, kind: str, model: str) -> dict[str, Any]:
        """Render, store, record in history; return the generate-style `images[]` entry."""
        image_id = str(uuid.uuid4())
        data, width, height = render_image(aspect_ratio, output_format, f"{prompt}/{image_id}", self.image_long_side)
        content_type = _PIL_FORMATS[output_format][1]
        ext = "jpg" if output_format == "jpeg" else output_format
        self.images[image_id] = {"bytes": data, "content_type": content_type, "ext": ext}
        view_path = f"/api/ds-prototypes/image_generation/{image_id}/view"
        self.history.insert(0, {
            "id": str(uuid.uuid4()), "batch_id": batch_id, "prompt": prompt, "model": model, "type": kind,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "output_image_url": view_path, "output_image_id": image_id,
            "width": width, "height": height, "content_type": content_type,
        })
        base = str(request.base_url).rstrip("/")
        return {"url": f"{base}/storage/generated/{image_id}.{ext}?sig=emu-{secrets.token_hex(4)}",
                "content_type": content_type, "file_name": f"{image_id}.{ext}", "file_size": len(data),
                "width": width, "height": height, "image_id": image_id}

    def _record(self, route: str, request: Request, body: Any = None) -> None:
        self.calls[route] += 1
        self.requests.append({"route": route, "headers": dict(request.headers), "json": body})

    # ---- routes -------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        self.calls["token"] += 1
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            # Like some real IdPs, echo what was sent: the client must redact it.
            return JSONResponse({"error": "invalid_client",
                                 "error_description": f"Client authentication failed for secret "
                                                      f"{form.get('client_secret')}"}, status_code=401)
        if "openid" not in form.get("scope", "").split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = f"nf-at-{secrets.token_hex(12)}"
        self.tokens[token] = time.monotonic() + self.expires_in
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in})

    async def workspaces(self, request: Request) -> Response:
        self._record("workspaces", request)
        if denied := self._authorise(request, "workspaces", need_workspace=False):
            return denied
        return JSONResponse({"_embedded": {"workspaces": [{"id": WORKSPACE_ID, "name": "Emulated"}]},
                             "page": {"size": 20, "totalElements": 1, "totalPages": 1, "number": 0}})

    async def quotas(self, request: Request) -> Response:
        self._record("quotas", request)
        if denied := self._authorise(request, "quotas"):
            return denied
        if request.path_params["workspace_id"] != WORKSPACE_ID:
            return _error(404, "Workspace not found", "NOT_FOUND")
        if faulted := await self._common_faults("quotas"):
            return faulted
        # An empty quota dict stands for a workspace without any images quota.
        wants_images = request.query_params.get("usageTypeKey") == "images"
        data = [dict(self.quota)] if self.quota and wants_images else []
        return JSONResponse({"data": data, "page": {"size": 20, "totalElements": len(data), "totalPages": 1,
                                                    "currentPage": 1}})

    async def list_models(self, request: Request) -> Response:
        self._record("models", request)
        if denied := self._authorise(request, "models"):
            return denied
        return JSONResponse(self.models)

    async def generate(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self._record("generate", request, body)
        if denied := self._authorise(request, "generate"):
            return denied
        if faulted := await self._common_faults("generate"):
            return faulted
        if not isinstance(body, dict):
            return _error(400, "Body must be a JSON object", "BAD_REQUEST")
        errors = []
        model = next((m for m in self.models if m["id"] == body.get("model")), None)
        if model is None:
            errors.append({"field": "model", "message": "unknown model", "type": "value_error"})
        if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
            errors.append({"field": "prompt", "message": "prompt is required", "type": "missing"})
        if model and body.get("aspect_ratio") not in model["aspect_ratios"]:
            errors.append({"field": "aspect_ratio", "message": "unsupported aspect ratio", "type": "value_error"})
        if model and body.get("output_format") not in model["output_formats"]:
            errors.append({"field": "output_format", "message": "unsupported format", "type": "value_error"})
        num = body.get("num_images", 1)
        if model and (not isinstance(num, int) or not 1 <= num <= model["max_images"]):
            errors.append({"field": "num_images", "message": "out of range", "type": "value_error"})
        if errors:
            return JSONResponse({"errors": errors}, status_code=422)
        if not model["allowed"]:
            return _error(403, "Model not permitted for this workspace", "MODEL_NOT_ALLOWED")
        if not self._room_for(num):
            return _error(403, "Image generation limit reached", "LIMIT_REACHED")
        self._spend(num)
        batch_id = str(uuid.uuid4())
        images = [self._make_image(request, aspect_ratio=body["aspect_ratio"], output_format=body["output_format"],
                                   prompt=body["prompt"], batch_id=batch_id, kind="text2image", model=model["id"])
                  for _ in range(num)]
        if self._take_fault("malformed_json", "generate", "generate"):
            return Response('{"images": [{"url": ', media_type="application/json")
        if lost := self._answer_lost("generate"):
            return lost
        return JSONResponse({"images": images, "prompt": body["prompt"], "batch_id": batch_id})

    def _answer_lost(self, route: str) -> Response | None:
        """After the charge: no answer at all, or a 5xx, when a lost-answer fault fires for `route`."""
        if self._take_fault("drop_after_accept", route, "generate"):
            return DroppedConnection()
        if fault := self._take_fault("error_after_submit", route, "generate"):
            return _error(int(fault.get("status", 502)), "Bad gateway: the image service did not answer", "UPSTREAM")
        return None

    def _image_response(self, image_id: str, route: str) -> Response:
        """Image bytes, or what a fault makes of them."""
        image = self.images.get(image_id)
        if image is None:
            return _error(404, "Image not found", "NOT_FOUND")
        data, content_type = image["bytes"], image["content_type"]
        if self._take_fault("truncated_image", route, "storage"):
            data = data[: len(data) // 2]
        if self._take_fault("not_image", route, "storage"):
            data = b"<html><body>AccessDenied</body></html>"
        if self._take_fault("wrong_content_type", route, "storage"):
            # Bytes of another format than declared (PNG <-> JPEG).
            fmt = "JPEG" if content_type != "image/jpeg" else "PNG"
            with Image.open(io.BytesIO(image["bytes"])) as im:
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format=fmt)
            data = buf.getvalue()
        return Response(data, media_type=content_type)

    async def storage(self, request: Request) -> Response:
        self._record("storage", request)
        if "authorization" in request.headers:
            # A CDN must never see the API bearer token.
            return _error(400, "Unexpected Authorization header on storage", "LEAKED_TOKEN")
        if faulted := await self._common_faults("storage"):
            return faulted
        image_id = request.path_params["file"].rsplit(".", 1)[0]
        return self._image_response(image_id, "storage")

    async def view(self, request: Request) -> Response:
        self._record("view", request)
        if denied := self._authorise(request, "view"):
            return denied
        return self._image_response(request.path_params["image_id"], "view")

    async def get_history(self, request: Request) -> Response:
        self._record("history", request)
        if denied := self._authorise(request, "history"):
            return denied
        return JSONResponse({"items": self.history, "total": len(self.history)})

    async def edit(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self._record("edit", request, body)
        if denied := self._authorise(request, "edit"):
            return denied
        if faulted := await self._common_faults("edit"):
            return faulted
        urls = body.get("image_urls") if isinstance(body, dict) else None
        if not isinstance(urls, list) or not urls or not isinstance(body.get("prompt"), str):
            return JSONResponse({"errors": [{"field": "image_urls", "message": "required", "type": "missing"}]},
                                status_code=422)
        if any(not isinstance(u, str) or not u.startswith("/") for u in urls):
            # The real image service resolves paths internally and falls over on absolute URLs.
            return JSONResponse({"error": "Internal Server Error"}, status_code=500)
        match = _VIEW_PATH.match(urls[0])
        if not match or match.group(1) not in self.images:
            return _error(404, "Source image not found", "NOT_FOUND")
        if not self._room_for(1):
            return _error(403, "Image generation limit reached", "LIMIT_REACHED")
        self._spend(1)
        source = next(h for h in self.history if h["output_image_id"] == match.group(1))
        ratio = f"{source['width']}:{source['height']}"
        fmt = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}[source["content_type"]]
        batch_id = str(uuid.uuid4())
        image = self._make_image(request, aspect_ratio=ratio, output_format=fmt, prompt=body["prompt"],
                                 batch_id=batch_id, kind="edit", model="nano-banana-2")
        if lost := self._answer_lost("edit"):
            return lost
        if self.edit_response_shape == "history_item":
            return JSONResponse(self.history[0])
        return JSONResponse({"images": [image], "prompt": body["prompt"], "batch_id": batch_id})

    async def delete(self, request: Request) -> Response:
        self._record("delete", request)
        if denied := self._authorise(request, "delete"):
            return denied
        image_id = request.path_params["image_id"]
        for index, item in enumerate(self.history):
            if item["output_image_id"] == image_id:
                del self.history[index]
                self.images.pop(image_id, None)
                return Response(status_code=204)
        return _error(404, "Image not found", "NOT_FOUND")

    def _build_app(self) -> KeepsRawSend:
        return KeepsRawSend(Starlette(routes=[
            Route("/oauth/v2/token", self.token, methods=["POST"]),
            Route("/api/workspace-service/v1/workspaces", self.workspaces, methods=["GET"]),
            Route("/api/usage-service/v1/workspaces/{workspace_id}/quotas", self.quotas, methods=["GET"]),
            Route("/api/ds-prototypes/image_generation/models", self.list_models, methods=["GET"]),
            Route("/api/ds-prototypes/image_generation/", self.generate, methods=["POST"]),
            Route("/api/ds-prototypes/image_generation/{image_id}/view", self.view, methods=["GET"]),
            Route("/api/ds-prototypes/history", self.get_history, methods=["GET"]),
            Route("/api/ds-prototypes/history/{image_id}", self.delete, methods=["DELETE"]),
            Route("/api/ds-prototypes/edit", self.edit, methods=["POST"]),
            Route("/storage/generated/{file}", self.storage, methods=["GET"]),
        ]))
