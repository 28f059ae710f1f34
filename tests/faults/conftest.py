"""Fault-matrix helpers: a hostile NVIDIA emulator, `imagegen run` as a real subprocess against the
session Prefect server, quick retries, and the end-state checks every fault test shares
(each master published or quarantined exactly once, no orphan file, no dangling row, no duplicate).

Subprocess runs talk to the session harness's API (PREFECT_API_URL) instead of starting a temporary
server each (that costs ~17 s per run here); they get their own PREFECT_HOME, so their result storage
(and with it the generation cache) is theirs unless a test shares one on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tests.emulators.nvidia import NvidiaEmulator
from tests.emulators.serve import serve_asgi
from tests.polling import tail, wait_for  # noqa: F401 (re-exported to the tests)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NVIDIA_KEY = "nvapi-SENTINEL-faults-key"
# The emulators draw simple pictures: these tests are about faults, so the gate takes them as they are.
LENIENT = {"min_width": 64, "min_height": 64, "max_edit_attempts": 0, "check_brand_colors": False,
           "min_sharpness": 0, "max_noise_sigma": 50, "max_clipped_fraction": 1.0, "max_blockiness": 50,
           "duplicate_max_distance": 0}
# Temp files written before an atomic rename: `.<name>.<pid>.<host>-<start>.<random>.tmp` (imagegen.files)
# and the `.incoming-*` of earlier versions.
TEMP_FILE = re.compile(r"^\.(incoming-|.*\.tmp$)")
CONFLICT_FILE = re.compile(r"-[0-9a-f]{12}\.[a-z]+$")  # imagegen.stores.base.conflict_key


# --------------------------------------------------------------------------- hostile NVIDIA emulator

class HostileNvidia(NvidiaEmulator):
    """The NVIDIA emulator plus answers no well-behaved server gives, and a gate that holds requests.

    - `image_override`: bytes sent as every artifact's image (a bomb, a huge header, a GIF...).
    - `raw_answer` = (status, content_type, body) for the next `raw_answers` inference requests,
      sent instead of the emulator's own answer (never counted as spent).
    - `hold_after` = k: the first k inference requests pass, later ones wait until `release()` and are
      then refused with 503 without reaching the emulator (so `spent` only counts what was let through).
      With `bill_held`, released requests are answered and billed instead, as a real provider bills a
      request whose client died while it ran (the answer goes nowhere).
    """

    def reset(self) -> None:
        super().reset()
        self.image_override: bytes | None = None
        self.raw_answer: tuple[int, str, bytes] | None = None
        self.raw_answers = 0
        self.hold_after: int | None = None
        self.bill_held = False
        self.held = 0
        self._seen = 0
        self._released = threading.Event()
        self._hold_lock = threading.Lock()

    def release(self) -> None:
        self._released.set()

    async def genai(self, request: Request) -> Response:
        with self._hold_lock:
            position, self._seen = self._seen, self._seen + 1
            hold = self.hold_after is not None and position >= self.hold_after
            if hold:
                self.held += 1
        if hold:
            await request.body()  # read now: once the client is gone its body can no longer be received
            while not self._released.is_set():
                await asyncio.sleep(0.05)
            if self.bill_held:
                return await super().genai(request)
            return PlainTextResponse("held, then dropped", status_code=503)
        if self.raw_answer is not None and self.raw_answers > 0:
            self.raw_answers -= 1
            self.calls["genai"] += 1
            status, content_type, body = self.raw_answer
            return Response(body, status_code=status, media_type=content_type)
        return await super().genai(request)

    def _artifact_body(self, prompt: str, seed: int, width: int, height: int) -> bytes:
        if self.image_override is None:
            return super()._artifact_body(prompt, seed, width, height)
        encoded = base64.b64encode(self.image_override).decode()
        return json.dumps({"artifacts": [{"base64": encoded, "finishReason": "SUCCESS", "seed": seed}]}).encode()


class _Switch:
    """One loopback server per module; each test plugs in a fresh emulator."""

    target = None

    async def __call__(self, scope, receive, send):
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def nvidia_loopback():
    switch = _Switch()
    with serve_asgi(switch) as url:
        yield switch, url


@pytest.fixture
def nvidia(nvidia_loopback, monkeypatch) -> HostileNvidia:
    switch, url = nvidia_loopback
    switch.target = emulator = HostileNvidia(api_key=NVIDIA_KEY)
    monkeypatch.setenv("NVIDIA_API_KEY", NVIDIA_KEY)
    monkeypatch.setenv("IMAGEGEN_NVIDIA_BASE_URL", f"{url}/v1/genai")
    monkeypatch.setenv("IMAGEGEN_NVCF_STATUS_URL", f"{url}/v2/nvcf/pexec/status")
    monkeypatch.setenv("IMAGEGEN_VLM_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "6000")
    yield emulator
    emulator.release()  # a held request must not keep the server from shutting down


# --------------------------------------------------------------------------- Prefect

@pytest.fixture
def api_url(prefect_harness) -> str:
    """The session harness's API URL, for subprocesses (they then start no temporary server)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness did not set PREFECT_API_URL"
    return url


@pytest.fixture
def fast_retries(monkeypatch):
    """Task retries after 0.1 s instead of ~2/4/8 s: same number of attempts, same conditions."""
    from imagegen_flows.tasks.catalog import write_catalog
    from imagegen_flows.tasks.generate import generate_master, provider_edit_master, regenerate_master
    from imagegen_flows.tasks.providers import check_quota, read_usage, review_master
    from imagegen_flows.tasks.publish import publish_master, quarantine_master

    for task in (generate_master, regenerate_master, provider_edit_master, check_quota, read_usage, review_master,
                 publish_master, quarantine_master, write_catalog):
        monkeypatch.setattr(task, "retry_delay_seconds", [0.1] * task.retries)
        monkeypatch.setattr(task, "retry_jitter_factor", None)


def imagegen_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of an `imagegen run` subprocess: this process's (with the test's IMAGEGEN_* and
    credentials), the session API, and its own PREFECT_HOME (result storage = generation cache)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(home), PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def spawn_run(brief: Path, out: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`imagegen run BRIEF --out OUT --json` in its own process group (so a kill takes all of it)."""
    with open(log, "w") as fh:
        return subprocess.Popen([str(BIN / "imagegen"), "run", str(brief), "--out", str(out), "--json"],
                                cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group this test started (the run and anything it spawned)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def summary_from_log(log: Path) -> dict | None:
    """The --json summary line of a run's combined output (the only line that is a JSON object)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and line.endswith("}"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


# --------------------------------------------------------------------------- briefs

def write_brief(folder: Path, campaign: str, *, provider: Any, subjects: list[dict] | None = None,
                targets: list[dict] | None = None, size_sets: list[str] | None = None, quality: dict | None = None,
                publish: dict | None = None, suffix: str = ".yaml", **extra: Any) -> Path:
    brief = {
        "campaign": campaign,
        "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#2c3e50"]},
        "subjects": subjects or [{"subject": "a ceramic mug on a wooden table",
                                  "seed": 1 + zlib.crc32(campaign.encode()) % 10**6, "variations": 2}],
        "size_sets": size_sets or [],
        "targets": targets if targets is not None else [
            {"name": "feed_square", "platform": "web", "width": 320, "height": 320, "format": "JPEG"}],
        "provider": provider,
        "quality": {**LENIENT, **(quality or {})},
        **({"publish": publish} if publish else {}),
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{campaign}{suffix}"
    path.write_text(json.dumps(brief, ensure_ascii=False) if suffix == ".json"
                    else yaml.safe_dump(brief, allow_unicode=True))
    return path


# --------------------------------------------------------------------------- end-state checks

def catalog_rows(out: Path) -> list[dict]:
    if not (out / "catalog.db").exists():
        return []
    # closed, not just committed: an open connection keeps the WAL files, which a later run then writes
    with contextlib.closing(sqlite3.connect(out / "catalog.db")) as conn:
        conn.row_factory = sqlite3.Row
        if not conn.execute("SELECT name FROM sqlite_master WHERE name='media_assets'").fetchone():
            return []
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets")]


def stored_files(out: Path) -> tuple[set[str], list[str]]:
    """({'store:key'} of every file in the local stores, [leftover temp files]).

    The quarantine's reasons.json sits beside its master by design and has no row of its own.
    """
    files, temps = set(), []
    for store, root in (("local", out / "assets"), ("quarantine", out / "quarantine")):
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            if TEMP_FILE.match(path.name):
                temps.append(str(path))
            elif not (store == "quarantine" and path.name == "reasons.json"):
                files.add(f"{store}:{path.relative_to(root).as_posix()}")
    return files, temps


def consistency_problems(out: Path, masters: int) -> list[str]:
    """Everything wrong with the end state of `out` (empty when it is right):

    `masters` assets in the catalog, each with exactly one status and one master row; rows are unique;
    every row's file exists with the row's sha256; every stored file has a row (no orphan); no
    conflict copies (the same key stored twice with different bytes).
    """
    import hashlib

    problems: list[str] = []
    rows = catalog_rows(out)
    keys = Counter((r["campaign"], r["asset_id"], r["variant"]) for r in rows)
    problems += [f"duplicate row {k} x{n}" for k, n in keys.items() if n > 1]
    by_asset: dict[str, list[dict]] = {}
    for row in rows:
        by_asset.setdefault(row["asset_id"], []).append(row)
    if len(by_asset) != masters:
        problems.append(f"{len(by_asset)} asset(s) in the catalog, expected {masters}")
    for aid, asset_rows in by_asset.items():
        statuses = {r["status"] for r in asset_rows}
        masters = [r for r in asset_rows if r["variant"] == "master"]
        if len(statuses) != 1 or len(masters) != 1:
            problems.append(f"{aid}: statuses {sorted(statuses)}, {len(masters)} master row(s)")
    roots = {"local": out / "assets", "quarantine": out / "quarantine"}
    row_files = set()
    for row in rows:
        root = roots.get(row["store"])
        if root is None:
            problems.append(f"row in unexpected store {row['store']!r}")
            continue
        row_files.add(f"{row['store']}:{row['store_key']}")
        path = root / row["store_key"]
        if not path.is_file():
            problems.append(f"dangling row: {row['store']}:{row['store_key']} has no file")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
            problems.append(f"{row['store']}:{row['store_key']}: file differs from its row's sha256")
    files, _temps = stored_files(out)
    problems += [f"orphan file without a row: {f}" for f in sorted(files - row_files)]
    problems += [f"conflict copy (same key, other bytes): {f}" for f in sorted(files) if CONFLICT_FILE.search(f)]
    return problems


def master_files(out: Path) -> list[Path]:
    folder = out / "masters"
    return sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) if folder.exists() else []


def generation_records(home: Path) -> list[Path]:
    """Committed generation-cache records in a PREFECT_HOME's result storage."""
    storage = home / "storage"
    return sorted(storage.glob("imagegen-generate-*")) if storage.exists() else []
