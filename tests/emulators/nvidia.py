"""NVIDIA emulator: hosted genai API, NVCF status/assets, a self-hosted NIM and the chat (VLM) API.

Follows the CONFIRMED parts of shared/docs/provider-contracts.md sections 1-2 and is written
independently of the client (its own rules table), so it can catch client mistakes. Serve it with
tests.emulators.serve.serve_asgi(emulator.app) and point the client at:
    base_url   = {url}/v1/genai          status_url = {url}/v2/nvcf/pexec/status
    assets_url = {url}/v2/nvcf/assets    nim_url    = {url}          VLM base = {url}/v1

`emulator.faults` switches failure modes per test; `emulator.calls` counts requests per route and
`emulator.spent` counts inference requests that got past validation (what a real account pays for),
`emulator.paid_generations` the image generations and edits among them. `faults.rate_limit` per
`faults.rate_window` seconds is the account's sliding window (inference and chat requests alike, 429
over it); `emulator.arrivals` and `max_in_window()` tell what that window saw.

Lost answers: `drop_after_accept` charges a request and drops the connection without answering;
`error_after_submit` charges it and answers a 5xx; `drop_poll_answer` drops the final answer of a
status poll (the job stays, as when the answer dies on the way); a large `polls_before_result` keeps
jobs running past a client's poll deadline until `finish_jobs()` (the request finishes later).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.common import DroppedConnection, KeepsRawSend

FLUX_DEV = "black-forest-labs/flux.1-dev"
FLUX_SCHNELL = "black-forest-labs/flux.1-schnell"
FLUX_KONTEXT = "black-forest-labs/flux.1-kontext-dev"
SD35_LARGE = "stabilityai/stable-diffusion-3_5-large"

KONTEXT_SIDES = {672, 688, 720, 752, 800, 832, 880, 944, 1024, 1104, 1184, 1248, 1328, 1392, 1456, 1504, 1568}
BODY_LIMIT = 5_000_000
INLINE_IMAGE_LIMIT = 200_000  # the contract's "about 180-200 KB": the upper end, so the client must be safe

# field -> (kind, rule); kinds: range (lo, hi), one_of (set), const (value)
_FLUX_COMMON = {
    "mode": ("one_of", {"base", "canny", "depth"}),
    "width": ("one_of", {1024}),
    "height": ("one_of", {1024}),
    "samples": ("one_of", {1}),
    "seed": ("range", (0, 2**63)),
}
MODEL_FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    FLUX_DEV: {**_FLUX_COMMON, "cfg_scale": ("range", (0, 9)), "steps": ("range", (5, 100)), "image": ("any", None)},
    FLUX_SCHNELL: {**_FLUX_COMMON, "cfg_scale": ("one_of", {0}), "steps": ("range", (1, 4)), "image": ("any", None)},
    FLUX_KONTEXT: {
        "image": ("any", None), "width": ("one_of", KONTEXT_SIDES), "height": ("one_of", KONTEXT_SIDES),
        "cfg_scale": ("range", (0, 9)), "aspect_ratio": ("any", None), "samples": ("one_of", {1}),
        "seed": ("range", (0, 2**63)), "steps": ("range", (20, 50)),
    },
    # only what community code is known to send; negative_prompt is switchable (unconfirmed upstream)
    SD35_LARGE: {"mode": ("one_of", {"base"}), "cfg_scale": ("range", (0, 20)), "steps": ("range", (1, 100)),
                 "seed": ("range", (0, 2**63))},
}


@dataclass
class NvidiaFaults:
    """Failure switches. Integer fields count down: "the next k answers"."""

    rate_limit: int | None = None  # allow this many inference requests per `rate_window` seconds, then 429
    rate_window: float = 60.0
    storm_429: int = 0
    retry_after: float | None = None  # sent with storm_429 answers
    error_5xx: int = 0
    error_status: int = 503
    slow: float = 0.0  # seconds to sleep before answering inference requests
    accept_202: bool = False  # answer inference with 202 + NVCF-REQID ...
    polls_before_result: int = 2  # ... then answer this many status polls with 202
    poll_404: bool = False
    zip_302: bool = False  # final status answer is a 302 to a presigned zip
    zip_content: str = "json"  # "json" (a <reqId>.response file) or "image" (the JPEG alone)
    malformed_json: int = 0
    truncated_image: int = 0
    not_image: int = 0
    content_filtered: int = 0
    model_not_enabled: set[str] = field(default_factory=set)
    expired_key: bool = False
    sd35_accepts_negative_prompt: bool = False
    nim_ready: bool = True
    chat_reply: str | None = None  # override the VLM's answer text
    drop_after_accept: int = 0  # charge, (start the job,) then drop the connection without answering
    error_after_submit: int = 0  # charge, (start the job,) then answer `error_after_submit_status`
    error_after_submit_status: int = 502
    drop_poll_answer: int = 0  # drop the connection instead of a final status answer; the job stays

    def take(self, name: str) -> bool:
        """Consume one of the next-k counter `name`; True if it fired."""
        value = getattr(self, name)
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False


def render_jpeg(prompt: str, seed: int, width: int, height: int) -> bytes:
    """A small, real JPEG that is a deterministic function of prompt and seed."""
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    image = Image.new("RGB", (width, height), tuple(digest[0:3]))
    draw = ImageDraw.Draw(image)
    for i in range(4):
        x0, y0 = digest[3 + i] * width // 256, digest[7 + i] * height // 256
        draw.ellipse((x0, y0, x0 + width // 3, y0 + height // 3), fill=tuple(digest[11 + 3 * i:14 + 3 * i]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def problem(status: int, title: str, detail: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": f"urn:nvcf:{status}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


class NvidiaEmulator:
    """The ASGI app plus its state; build one per test module and `reset()` between tests."""

    def __init__(self, api_key: str = "nvapi-test-key", *, nim_model: str = FLUX_DEV) -> None:
        self.api_key = api_key
        self.nim_model = nim_model
        self.reset()
        self.app = KeepsRawSend(Starlette(routes=[
            Route("/v1/genai/{publisher}/{model}", self.genai, methods=["POST"]),
            Route("/v1/infer", self.nim_infer, methods=["POST"]),
            Route("/v1/health/ready", self.health_ready, methods=["GET"]),
            Route("/v1/health/live", self.health_live, methods=["GET"]),
            Route("/v2/nvcf/pexec/status/{req_id}", self.status, methods=["GET"]),
            Route("/v2/nvcf/assets", self.create_asset, methods=["POST"]),
            Route("/s3/assets/{asset_id}", self.put_asset, methods=["PUT"]),
            Route("/s3/results/{req_id}.zip", self.get_zip, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ]))

    def reset(self) -> None:
        self.faults = NvidiaFaults()
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()  # answers of inference routes, by HTTP status
        self.spent = 0
        self.paid_generations = 0  # image generations and edits charged (spent, without chat completions)
        self.dropped = 0  # answers dropped on purpose (drop_after_accept, drop_poll_answer)
        self.requests: list[dict[str, Any]] = []  # inference bodies (images elided) and headers
        self.jobs: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self._accepted_at: deque[float] = deque()
        self.arrivals: list[float] = []  # time.monotonic() of every inference request at the rate check

    def max_in_window(self, window: float | None = None) -> int:
        """The most inference requests that arrived within any `window` seconds (default: `rate_window`),
        whatever they were answered: what the account's sliding window saw."""
        window = self.faults.rate_window if window is None else window
        times, most, first = sorted(self.arrivals), 0, 0
        for last, arrived in enumerate(times):
            while arrived - times[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most

    # ------------------------------------------------------------------ shared checks

    def _auth_error(self, request: Request) -> Response | None:
        presented = request.headers.get("Authorization", "")
        if self.faults.expired_key or presented != f"Bearer {self.api_key}":
            # echo what was presented, like a careless gateway: clients must redact it
            return problem(401, "Unauthorized", f"invalid or expired credentials: {presented!r}")
        return None

    def _rate_limited(self) -> bool:
        now = time.monotonic()
        self.arrivals.append(now)
        if self.faults.rate_limit is None:
            return False
        while self._accepted_at and now - self._accepted_at[0] >= self.faults.rate_window:
            self._accepted_at.popleft()
        if len(self._accepted_at) >= self.faults.rate_limit:
            return True
        self._accepted_at.append(now)
        return False

    async def _gate(self, request: Request, *, check_auth: bool = True) -> Response | None:
        """Auth, latency and capacity faults common to every inference route."""
        if check_auth and (error := self._auth_error(request)):
            return error
        if self.faults.slow:
            faults = self.faults
            await asyncio.sleep(faults.slow)
            if faults is not self.faults:  # reset meanwhile: the timed-out caller is gone, touch no new state
                return Response(status_code=499)
        if self._rate_limited():
            return problem(429, "Too Many Requests")
        if self.faults.take("storm_429"):
            headers = {"Retry-After": f"{self.faults.retry_after:g}"} if self.faults.retry_after is not None else None
            return problem(429, "Too Many Requests", headers=headers)
        if self.faults.take("error_5xx"):
            return problem(self.faults.error_status, "Service Unavailable", "worker crashed")
        body = await request.body()
        if len(body) > BODY_LIMIT:
            return problem(413, "Payload Too Large", f"body is {len(body)} bytes, limit {BODY_LIMIT}")
        return None

    def _answer(self, status: int, response: Response) -> Response:
        if status != 499:
            self.statuses[status] += 1
        return response

    # ------------------------------------------------------------------ image inference

    async def genai(self, request: Request) -> Response:
        model = f"{request.path_params['publisher']}/{request.path_params['model']}"
        self.calls["genai"] += 1
        return await self._infer(request, model, check_auth=True)

    async def nim_infer(self, request: Request) -> Response:
        self.calls["infer"] += 1
        return await self._infer(request, self.nim_model, check_auth=False)

    async def _infer(self, request: Request, model: str, *, check_auth: bool) -> Response:
        if (error := await self._gate(request, check_auth=check_auth)) is not None:
            return self._answer(error.status_code, error)
        if model in self.faults.model_not_enabled or model not in MODEL_FIELDS:
            return self._answer(404, problem(404, "Not Found", f"Function for model {model} not found for account"))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._answer(400, problem(400, "Bad Request", "body is not JSON"))
        self.requests.append({"model": model, "headers": dict(request.headers),
                              "body": {k: (v if k != "image" else f"<{len(v)} chars>") for k, v in body.items()}})
        invalid = self._validate(model, body) or self._check_image(model, body, request)
        if invalid:
            return self._answer(422, problem(422, "Unprocessable Entity", invalid))
        self.spent += 1
        self.paid_generations += 1
        seed = body.get("seed") or int.from_bytes(hashlib.sha256(body["prompt"].encode()).digest()[:4], "big") or 1
        width, height = body.get("width", 1024), body.get("height", 1024)
        payload = self._artifact_body(body["prompt"], seed, width, height)
        answer: Response
        if self.faults.accept_202 or self.faults.zip_302:
            req_id = str(uuid.uuid4())
            self.jobs[req_id] = {"remaining": self.faults.polls_before_result, "body": payload,
                                 "zip": self.faults.zip_302, "image": render_jpeg(body["prompt"], seed, width, height)}
            status, answer = 202, Response(status_code=202, headers={"NVCF-REQID": req_id, "NVCF-STATUS": "in-progress"})
        else:
            status, answer = 200, Response(payload, media_type="application/json")
        if self.faults.take("drop_after_accept"):
            self.dropped += 1
            return DroppedConnection()
        if self.faults.take("error_after_submit"):
            status = self.faults.error_after_submit_status
            answer = problem(status, "Bad Gateway", "the function failed to answer after it took the request")
        return self._answer(status, answer)

    def finish_jobs(self) -> None:
        """Every running job finishes now: its next status poll answers with the result."""
        for job in self.jobs.values():
            job["remaining"] = 0

    def _validate(self, model: str, body: dict[str, Any]) -> str | None:
        rules = MODEL_FIELDS[model]
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt or len(prompt) > 10_000:
            return "prompt: required, 1-10000 characters"
        for key, value in body.items():
            if key == "prompt":
                continue
            if key == "negative_prompt" and model == SD35_LARGE and self.faults.sd35_accepts_negative_prompt:
                continue
            if key not in rules:
                return f"{key}: extra inputs are not permitted"
            kind, rule = rules[key]
            if kind == "one_of" and value not in rule:
                return f"{key}: must be one of {sorted(rule)}"
            if kind == "range" and (not isinstance(value, (int, float)) or not rule[0] <= value <= rule[1]):
                return f"{key}: must be between {rule[0]} and {rule[1]}"
        if model == FLUX_KONTEXT and "image" not in body:
            return "image: field required"
        return None

    def _check_image(self, model: str, body: dict[str, Any], request: Request) -> str | None:
        image = body.get("image")
        if image is None:
            return None
        if not isinstance(image, str) or not image.startswith("data:image/"):
            return "image: must be a data URL"
        header, _, data = image.partition(",")
        if header.endswith(";asset_id"):
            references = request.headers.get("NVCF-INPUT-ASSET-REFERENCES", "")
            if data not in [r.strip() for r in references.split(",")]:
                return "image: asset not listed in NVCF-INPUT-ASSET-REFERENCES"
            if self.assets.get(data, {}).get("bytes") is None:
                return "image: asset was never uploaded"
            return None
        if len(image) > INLINE_IMAGE_LIMIT:
            return f"image: inline image is {len(image)} characters; use an NVCF asset above ~200 KB"
        try:
            with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as im:
                if max(im.size) > 1568:
                    return "image: longest side must be <= 1568"
        except (binascii.Error, ValueError, OSError):
            return "image: not a decodable base64 image"
        return None

    def _artifact_body(self, prompt: str, seed: int, width: int, height: int) -> bytes:
        faults = self.faults
        if faults.take("malformed_json"):
            return b'{"artifacts": [{"base64": "'
        if faults.take("content_filtered"):
            filtered = {"base64": "", "finishReason": "CONTENT_FILTERED", "seed": seed}
            return json.dumps({"artifacts": [filtered]}).encode()
        image = render_jpeg(prompt, seed, width, height)
        if faults.take("truncated_image"):
            image = image[: len(image) // 2]
        elif faults.take("not_image"):
            image = b"<html>definitely not an image</html>"
        encoded = base64.b64encode(image).decode()
        return json.dumps({"artifacts": [{"base64": encoded, "finishReason": "SUCCESS", "seed": seed}]}).encode()

    # ------------------------------------------------------------------ NVCF status, results, assets

    async def status(self, request: Request) -> Response:
        self.calls["status"] += 1
        if (error := self._auth_error(request)) is not None:
            return error
        req_id = request.path_params["req_id"]
        job = self.jobs.get(req_id)
        if self.faults.poll_404 or job is None:
            return problem(404, "Not Found", f"request {req_id} not found")
        if job["remaining"] > 0:
            job["remaining"] -= 1
            return Response(status_code=202, headers={"NVCF-REQID": req_id, "NVCF-STATUS": "in-progress"})
        if self.faults.take("drop_poll_answer"):
            self.dropped += 1
            return DroppedConnection()
        if job["zip"]:
            location = f"{request.base_url}s3/results/{req_id}.zip?X-Amz-Signature=deadbeef"
            return Response(status_code=302, headers={"Location": location, "NVCF-REQID": req_id})
        del self.jobs[req_id]  # a delivered result expires
        return Response(job["body"], media_type="application/json")

    async def get_zip(self, request: Request) -> Response:
        self.calls["zip"] += 1
        if "authorization" in request.headers:  # S3 refuses a second auth mechanism
            return problem(400, "InvalidArgument", "Only one auth mechanism allowed")
        job = self.jobs.pop(request.path_params["req_id"], None)
        if job is None:
            return problem(404, "NoSuchKey")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            if self.faults.zip_content == "image":
                archive.writestr("result.jpg", job["image"])
            else:
                archive.writestr(f"{request.path_params['req_id']}.response", job["body"])
        return Response(buffer.getvalue(), media_type="application/zip")

    async def create_asset(self, request: Request) -> Response:
        self.calls["assets_create"] += 1
        if (error := self._auth_error(request)) is not None:
            return error
        body = json.loads(await request.body())
        asset_id = str(uuid.uuid4())
        self.assets[asset_id] = {"contentType": body["contentType"], "description": body["description"],
                                 "bytes": None}
        return JSONResponse({"assetId": asset_id,
                             "uploadUrl": f"{request.base_url}s3/assets/{asset_id}?X-Amz-Signature=cafe",
                             "contentType": body["contentType"], "description": body["description"]})

    async def put_asset(self, request: Request) -> Response:
        self.calls["asset_put"] += 1
        asset = self.assets.get(request.path_params["asset_id"])
        if asset is None:
            return problem(404, "NoSuchKey")
        if "authorization" in request.headers:
            return problem(400, "InvalidArgument", "Only one auth mechanism allowed")
        if (request.headers.get("content-type") != asset["contentType"]
                or request.headers.get("x-amz-meta-nvcf-asset-description") != asset["description"]):
            return problem(403, "SignatureDoesNotMatch")
        asset["bytes"] = await request.body()
        return Response(status_code=200)

    # ------------------------------------------------------------------ NIM health

    async def health_ready(self, request: Request) -> Response:
        self.calls["health"] += 1
        return JSONResponse({"object": "health.response", "message": "ready"} if self.faults.nim_ready
                            else {"message": "loading"}, status_code=200 if self.faults.nim_ready else 503)

    async def health_live(self, request: Request) -> Response:
        return JSONResponse({"message": "live"})

    # ------------------------------------------------------------------ chat completions (VLM)

    async def chat(self, request: Request) -> Response:
        self.calls["chat"] += 1
        if (error := await self._gate(request)) is not None:
            return self._answer(error.status_code, error)
        try:
            body = json.loads(await request.body())
            content = body["messages"][0]["content"]
            image_url = content[0]["image_url"]["url"]
            instruction = content[1]["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            return self._answer(422, problem(422, "Unprocessable Entity", "expected an image part then a text part"))
        if body.get("model") in self.faults.model_not_enabled:
            return self._answer(404, problem(404, "Not Found", f"model {body.get('model')} not found"))
        if len(image_url) > INLINE_IMAGE_LIMIT:
            return self._answer(413, problem(413, "Payload Too Large", "inline image above ~180 KB"))
        self.requests.append({"model": body.get("model"), "headers": dict(request.headers),
                              "body": {"image_chars": len(image_url), "text": instruction}})
        self.spent += 1
        if self.faults.take("malformed_json"):
            return self._answer(200, Response(b'{"choices": [', media_type="application/json"))
        payload = json.dumps(self._chat_completion(body.get("model", ""), instruction)).encode()
        if self.faults.accept_202:
            req_id = str(uuid.uuid4())
            self.jobs[req_id] = {"remaining": self.faults.polls_before_result, "body": payload,
                                 "zip": self.faults.zip_302, "image": b""}
            return self._answer(202, Response(status_code=202, headers={"NVCF-REQID": req_id}))
        if self.faults.take("drop_after_accept"):  # charged above, then the answer is lost
            self.dropped += 1
            return DroppedConnection()
        if self.faults.take("error_after_submit"):
            status = self.faults.error_after_submit_status
            return self._answer(status, problem(status, "Bad Gateway", "the function failed after it took the request"))
        return self._answer(200, Response(payload, media_type="application/json"))

    def _chat_completion(self, model: str, instruction: str) -> dict[str, Any]:
        if self.faults.chat_reply is not None:
            text = self.faults.chat_reply
        elif "alt text only" in instruction:
            text = '"Colorful overlapping circles on a flat background"'
        else:
            text = ('```json\n{"verdict": "pass", "reasons": [], '
                    '"alt_text": "Colorful overlapping circles on a flat background"}\n```')
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


def endpoints(url: str) -> dict[str, str]:
    """Client URL settings that point NvidiaClient at an emulator served at `url`."""
    return {"base_url": f"{url}/v1/genai", "status_url": f"{url}/v2/nvcf/pexec/status",
            "assets_url": f"{url}/v2/nvcf/assets"}
