"""NvidiaClient / NvidiaGenerator against the NVIDIA emulator: contract, faults, pacing, secrets."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegen.errors import (
    ContentFiltered,
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    TransientProviderError,
    is_transient,
)
from imagegen.models import GenerationRequest, ImageRef
from imagegen.pending import PENDING_FOLDER
from imagegen.providers.base import ImageGenerator
from imagegen.providers.nvidia import NvidiaClient, NvidiaGenerator, nvidia_account_key
from imagegen.providers.nvidia_models import (
    FLUX_DEV,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    KONTEXT_SIZES,
    SD35_LARGE,
    model_capabilities,
    snap_kontext_size,
    validate_request,
)
from imagegen.ratelimit import TokenBucket
from imagegen_flows.blocks.nvidia import NvidiaCredentials, NvidiaImageProvider
from tests.emulators.nvidia import NvidiaEmulator, endpoints
from tests.emulators.serve import serve_asgi
from tests.providers.task_retries import retry_while_transient

SENTINEL = "nvapi-SENTINEL-4b1d9e07c2a8f3-never-print-me"
FAST_TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture(scope="module")
def served():
    emulator = NvidiaEmulator(api_key=SENTINEL)
    with serve_asgi(emulator.app) as url:
        emulator.url = url
        yield emulator


@pytest.fixture
def emu(served):
    served.reset()
    return served


def make_client(emu, *, api_key: str = SENTINEL, **overrides) -> NvidiaClient:
    options = dict(endpoints(emu.url), timeout=FAST_TIMEOUT, poll_seconds=0, poll_interval=0.01, poll_deadline=5.0)
    options.update(overrides)
    return NvidiaClient(api_key, **options)


@pytest.fixture
def client(emu):
    with make_client(emu) as c:
        yield c


@pytest.fixture
def generator(client):
    return NvidiaGenerator(client)


def request(**overrides) -> GenerationRequest:
    fields = dict(prompt="A luxury watch on a marble table, studio lighting", negative_prompt="blurry, watermark",
                  width=1024, height=1024, seed=42)
    fields.update(overrides)
    return GenerationRequest(**fields)


def files_in(path: Path) -> list[Path]:
    """Files written under `path`, except the pending-requests journal (tests/providers/test_lost_answers.py)."""
    return [p for p in path.rglob("*") if p.is_file() and PENDING_FOLDER not in p.relative_to(path).parts] \
        if path.exists() else []


def flux_payload(**overrides):
    payload = {"prompt": "a cat", "mode": "base", "width": 1024, "height": 1024, "cfg_scale": 5, "samples": 1,
               "seed": 1, "steps": 50}
    payload.update(overrides)
    return payload


# ----------------------------------------------------------------------------- happy paths

def test_generate_flux_dev_stores_a_verified_image_and_folds_negatives(emu, generator, tmp_path):
    assert isinstance(generator, ImageGenerator)
    result = generator.generate(request(), tmp_path)

    assert Path(result.image.path).exists() and result.image.format == "JPEG"
    assert (result.image.width, result.image.height) == (1024, 1024)
    assert (result.provider, result.model, result.seed) == ("nvidia", FLUX_DEV, 42)
    assert result.content_filtered is False
    assert result.metadata["negatives"] == "folded"
    assert result.metadata["endpoint"] == "hosted" and result.metadata["nvcf_polls"] == 0

    sent = emu.requests[-1]
    assert sent["model"] == FLUX_DEV
    assert "negative_prompt" not in sent["body"] and "Avoid: blurry, watermark" in sent["body"]["prompt"]
    assert sent["body"]["steps"] == 50 and sent["body"]["cfg_scale"] == 5.0
    assert sent["headers"]["authorization"] == f"Bearer {SENTINEL}"
    assert sent["headers"]["accept"] == "application/json" and sent["headers"]["nvcf-poll-seconds"] == "0"
    assert emu.spent == 1


def test_seed_zero_records_the_seed_the_provider_chose(emu, generator, tmp_path):
    result = generator.generate(request(seed=0, negative_prompt=""), tmp_path)
    assert result.seed != 0 and result.metadata["negatives"] == "none"


def test_a_request_for_fewer_steps_is_sent_with_them_unless_the_block_sets_its_own(emu, client, tmp_path):
    result = NvidiaGenerator(client).generate(request(steps=20), tmp_path)
    assert emu.requests[-1]["body"]["steps"] == 20 and result.metadata["steps"] == 20
    NvidiaGenerator(client, steps=30).generate(request(steps=20), tmp_path)
    assert emu.requests[-1]["body"]["steps"] == 30


def test_schnell_sends_its_own_defaults(emu, client, tmp_path):
    NvidiaGenerator(client, model=FLUX_SCHNELL).generate(request(), tmp_path)
    body = emu.requests[-1]["body"]
    assert (body["cfg_scale"], body["steps"]) == (0.0, 4)


def test_sd35_sends_the_community_fields_and_folds_negatives_by_default(emu, client, tmp_path):
    result = NvidiaGenerator(client, model=SD35_LARGE).generate(request(), tmp_path)
    body = emu.requests[-1]["body"]
    assert set(body) == {"prompt", "mode", "cfg_scale", "steps", "seed"}
    assert (body["mode"], body["cfg_scale"], body["steps"]) == ("base", 4.5, 35)
    assert result.metadata["negatives"] == "folded"


def test_sd35_native_negative_prompt_flag_works_where_accepted_and_fails_clearly_where_not(emu, client, tmp_path):
    sd35 = NvidiaGenerator(client, model=SD35_LARGE, native_negative_prompt=True)
    assert sd35.capabilities().negative_prompt == "native"
    with pytest.raises(ProviderRequestInvalid) as info:
        sd35.generate(request(), tmp_path)
    assert info.value.status == 422 and "negative_prompt" in str(info.value)

    emu.faults.sd35_accepts_negative_prompt = True
    result = sd35.generate(request(), tmp_path)
    assert result.metadata["negatives"] == "native"
    assert emu.requests[-1]["body"]["negative_prompt"] == "blurry, watermark"


def test_long_negatives_are_dropped_not_sent_over_the_prompt_budget(emu, generator, tmp_path):
    result = generator.generate(request(prompt="x" * 480), tmp_path)
    assert result.metadata["negatives"] == "dropped" and emu.requests[-1]["body"]["prompt"] == "x" * 480


def test_capabilities_per_model():
    dev = model_capabilities(FLUX_DEV)
    assert dev.native_sizes == [(1024, 1024)] and dev.max_prompt_chars == 500 and dev.negative_prompt == "fold"
    assert not dev.supports_edit
    kontext = model_capabilities(FLUX_KONTEXT)
    assert kontext.supports_edit and (1024, 1024) in kontext.native_sizes and kontext.max_side == 1568
    assert model_capabilities(FLUX_SCHNELL).native_sizes == [(1024, 1024)]


# ----------------------------------------------------------------------------- validation before HTTP

@pytest.mark.parametrize("model, params, field, rule", [
    (FLUX_DEV, flux_payload(width=1536), "width", "1024"),
    (FLUX_DEV, flux_payload(steps=3), "steps", "between 5 and 100"),
    (FLUX_DEV, flux_payload(cfg_scale=12), "cfg_scale", "between 0 and 9"),
    (FLUX_DEV, flux_payload(seed=-1), "seed", ">= 0"),
    (FLUX_DEV, flux_payload(samples=2), "samples", "must be 1"),
    (FLUX_DEV, flux_payload(negative_prompt="blurry"), "negative_prompt", "fold negatives"),
    (FLUX_DEV, flux_payload(prompt=""), "prompt", "non-empty"),
    (FLUX_DEV, flux_payload(prompt="p" * 10_001), "prompt", "10000"),
    (FLUX_DEV, flux_payload(mode="canny"), "image", "required with mode canny"),
    (FLUX_SCHNELL, flux_payload(cfg_scale=1, steps=4), "cfg_scale", "must be 0"),
    (FLUX_SCHNELL, flux_payload(cfg_scale=0, steps=8), "steps", "between 1 and 4"),
    (FLUX_KONTEXT, {"prompt": "x", "image": "data:image/jpeg;base64,AA", "mode": "base"}, "mode", "not a field"),
    (FLUX_KONTEXT, {"prompt": "x", "image": "data:image/jpeg;base64,AA", "width": 1000}, "width", "672"),
    (FLUX_KONTEXT, {"prompt": "x", "image": "data:image/jpeg;base64,AA", "steps": 10}, "steps", "between 20 and 50"),
    (FLUX_KONTEXT, {"prompt": "x"}, "image", "required"),
    (SD35_LARGE, {"prompt": "x", "width": 1024}, "width", "not a field"),
    ("acme/unknown-model", {"prompt": "x"}, "model", "must be one of"),
])
def test_validation_names_field_and_rule(model, params, field, rule):
    with pytest.raises(ProviderRequestInvalid) as info:
        validate_request(model, params)
    assert info.value.field == field
    assert str(info.value).startswith(f"nvidia: {field}: ") and rule in str(info.value)


def test_invalid_request_never_reaches_the_network(emu, generator, tmp_path):
    with pytest.raises(ProviderRequestInvalid, match="width"):
        generator.generate(request(width=1536, height=1024), tmp_path)
    assert sum(emu.calls.values()) == 0 and files_in(tmp_path) == []


def test_generate_refuses_an_edit_only_model(generator, tmp_path):
    with pytest.raises(ProviderRequestInvalid, match="editing model"):
        generator.generate(request(model=FLUX_KONTEXT), tmp_path)


# ----------------------------------------------------------------------------- faults: what the user sees

def test_expired_key_is_an_auth_error_with_the_echoed_key_redacted(emu, generator, tmp_path):
    emu.faults.expired_key = True
    with pytest.raises(ProviderAuthError) as info:
        retry_while_transient(lambda: generator.generate(request(), tmp_path), attempts=3)
    message = str(info.value)
    assert "HTTP 401" in message and "***" in message and SENTINEL not in message
    assert not is_transient(info.value) and emu.calls["genai"] == 1


def test_model_not_enabled_says_so(emu, generator, tmp_path):
    emu.faults.model_not_enabled = {FLUX_DEV}
    with pytest.raises(ProviderRequestInvalid, match="not enabled for this account / licence not accepted") as info:
        generator.generate(request(), tmp_path)
    assert info.value.status == 404 and emu.calls["genai"] == 1


def test_429_with_retry_after_pauses_the_shared_limiter(emu, tmp_path):
    limiter = TokenBucket(6000)
    emu.faults.storm_429, emu.faults.retry_after = 1, 0.3
    with make_client(emu, limiter=limiter) as c:
        with pytest.raises(TransientProviderError, match="rate limited") as info:
            NvidiaGenerator(c).generate(request(), tmp_path)
    assert info.value.status == 429 and info.value.retry_after == pytest.approx(0.3)
    started = time.monotonic()
    limiter.acquire()  # every caller of this account now waits out the Retry-After
    assert time.monotonic() - started >= 0.25


def test_429_storm_without_retry_after_recovers_on_retry(emu, generator, tmp_path):
    emu.faults.storm_429 = 2
    with pytest.raises(TransientProviderError) as info:
        generator.generate(request(), tmp_path)
    assert info.value.retry_after is None
    result = retry_while_transient(lambda: generator.generate(request(), tmp_path), attempts=3)
    assert result.image and emu.calls["genai"] == 3 and emu.spent == 1


def test_5xx_is_transient_and_recovers_on_retry(emu, generator, tmp_path):
    emu.faults.error_5xx = 2
    with pytest.raises(TransientProviderError, match="HTTP 503") as info:
        generator.generate(request(), tmp_path)
    assert is_transient(info.value)
    retry_while_transient(lambda: generator.generate(request(), tmp_path), attempts=3)
    assert emu.spent == 1


def test_slow_answer_times_out_as_transient(emu, tmp_path):
    emu.faults.slow = 1.0
    with make_client(emu, timeout=httpx.Timeout(0.3)) as c:
        with pytest.raises(TransientProviderError, match="timed out"):
            NvidiaGenerator(c).generate(request(), tmp_path)
    assert files_in(tmp_path) == []


def test_unreachable_server_is_transient(tmp_path):
    with NvidiaClient(SENTINEL, base_url="http://127.0.0.1:9/v1/genai", timeout=httpx.Timeout(1.0),
                      poll_seconds=0) as c:
        with pytest.raises(TransientProviderError, match="transport error"):
            NvidiaGenerator(c).generate(request(), tmp_path)


def test_malformed_json_is_transient_once_and_then_succeeds(emu, generator, tmp_path):
    emu.faults.malformed_json = 1
    with pytest.raises(TransientProviderError, match="malformed JSON"):
        generator.generate(request(), tmp_path)
    assert generator.generate(request(), tmp_path).image


@pytest.mark.parametrize("fault, expected", [
    ("content_filtered", ContentFiltered),
    ("truncated_image", ProviderError),
    ("not_image", ProviderError),
])
def test_bad_artifacts_produce_no_image_and_are_not_retried(emu, generator, tmp_path, fault, expected):
    setattr(emu.faults, fault, 1)
    with pytest.raises(expected) as info:
        retry_while_transient(lambda: generator.generate(request(), tmp_path), attempts=3)
    assert type(info.value) is expected and not is_transient(info.value)
    assert files_in(tmp_path) == []  # nothing unverified is stored
    assert emu.calls["genai"] == 1 and emu.spent == 1  # nothing spent twice
    if fault == "content_filtered":
        assert "CONTENT_FILTERED" in str(info.value)
    else:
        assert "not a decodable image" in str(info.value)


# ----------------------------------------------------------------------------- NVCF async pattern

def test_202_then_polls_until_200(emu, generator, tmp_path):
    emu.faults.accept_202, emu.faults.polls_before_result = True, 2
    result = generator.generate(request(), tmp_path)
    assert result.metadata["nvcf_polls"] == 3 and emu.calls["status"] == 3
    assert result.metadata["nvcf_request_id"] and Path(result.image.path).exists()
    assert emu.calls["genai"] == 1 and emu.spent == 1


@pytest.mark.parametrize("zip_content", ["json", "image"])
def test_302_downloads_the_presigned_zip_without_credentials(emu, generator, tmp_path, zip_content):
    emu.faults.zip_302, emu.faults.polls_before_result, emu.faults.zip_content = True, 1, zip_content
    result = generator.generate(request(), tmp_path)
    assert result.metadata["from_zip"] is True and emu.calls["zip"] == 1
    assert Image.open(result.image.path).size == (1024, 1024)
    if zip_content == "json":
        assert result.seed == 42


def test_poll_404_is_a_clear_non_transient_error(emu, generator, tmp_path):
    emu.faults.accept_202, emu.faults.poll_404 = True, True
    with pytest.raises(ProviderError, match=r"NVCF request [0-9a-f-]{36} unknown or expired") as info:
        retry_while_transient(lambda: generator.generate(request(), tmp_path), attempts=3)
    assert not is_transient(info.value) and emu.spent == 1 and files_in(tmp_path) == []


def test_poll_deadline_gives_up_as_transient(emu, tmp_path):
    emu.faults.accept_202, emu.faults.polls_before_result = True, 10_000
    with make_client(emu, poll_interval=0.05, poll_deadline=0.3) as c:
        with pytest.raises(TransientProviderError, match="still running after"):
            NvidiaGenerator(c).generate(request(), tmp_path)
    assert 3 <= emu.calls["status"] <= 10  # spaced by the poll interval, not a busy loop


def _mock_nvcf(status_answers: list[httpx.Response]):
    """A transport answering the POST with 202 and status polls from `status_answers` in order."""
    answers = iter(status_answers)

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST":
            return httpx.Response(202, headers={"NVCF-REQID": "req-1"})
        return next(answers)
    return httpx.MockTransport(handler)


def test_poll_504_means_no_worker_took_the_job():
    transport = _mock_nvcf([httpx.Response(202), httpx.Response(504)])
    with NvidiaClient(SENTINEL, transport=transport, poll_seconds=0, poll_interval=0) as c:
        with pytest.raises(TransientProviderError, match="no worker took the job"):
            c.infer(FLUX_DEV, flux_payload())


def test_poll_429_and_5xx_keep_polling_the_paid_job():
    image = Image.new("RGB", (8, 8), "red")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    final = {"artifacts": [{"base64": base64.b64encode(buffer.getvalue()).decode(), "finishReason": "SUCCESS",
                            "seed": 7}]}
    transport = _mock_nvcf([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(502),
                            httpx.Response(200, json=final)])
    with NvidiaClient(SENTINEL, transport=transport, poll_seconds=0, poll_interval=0) as c:
        result = c.infer(FLUX_DEV, flux_payload())
    assert result.polls == 3 and result.seed == 7


# ----------------------------------------------------------------------------- pacing

def test_rate_limiter_paces_calls_so_the_server_never_says_429(emu):
    rate, calls = 600.0, 15  # scaled up: 10/s
    emu.faults.rate_limit, emu.faults.rate_window = 12, 1.0
    with make_client(emu, limiter=TokenBucket(rate)) as c:
        started = time.monotonic()
        for _ in range(calls):
            c.infer(FLUX_DEV, flux_payload())
        elapsed = time.monotonic() - started
    assert elapsed >= (calls - 1) / (rate / 60) * 0.95
    assert emu.statuses[429] == 0 and emu.statuses[200] == calls


def test_without_the_limiter_the_same_burst_is_rate_limited(emu, client):
    emu.faults.rate_limit, emu.faults.rate_window = 12, 1.0
    outcomes = []
    for _ in range(15):
        try:
            client.infer(FLUX_DEV, flux_payload())
            outcomes.append("ok")
        except TransientProviderError as exc:
            outcomes.append(exc.status)
    assert 429 in outcomes and emu.statuses[429] > 0


def test_status_polls_take_no_rate_limit_tokens(emu):
    emu.faults.accept_202, emu.faults.polls_before_result = True, 5
    limiter = TokenBucket(60, burst=1)
    taken = []
    real_acquire = limiter.acquire
    limiter.acquire = lambda: taken.append(1) or real_acquire()  # counted, not timed
    with make_client(emu, limiter=limiter) as c:
        result = c.infer(FLUX_DEV, flux_payload())
    assert result.polls == 6 and len(taken) == 1


# ----------------------------------------------------------------------------- Kontext edits

def _write_image(path: Path, size: tuple[int, int], noisy: bool) -> Path:
    if noisy:  # incompressible: its JPEG is far above the inline limit
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path)
    else:
        Image.new("RGB", size, (30, 120, 200)).save(path)
    return path


def test_kontext_small_source_goes_inline_with_snapped_size(emu, client, tmp_path):
    source = _write_image(tmp_path / "small.png", (800, 600), noisy=False)
    result = client.edit(source, "make the sky orange", seed=3)
    assert result.extra["edit_input"] == "inline" and emu.calls["assets_create"] == 0
    body = emu.requests[-1]["body"]
    assert (body["width"], body["height"]) == snap_kontext_size(800, 600) == (1184, 880)
    assert body["aspect_ratio"] == "match_input_image" and "mode" not in body
    assert Image.open(io.BytesIO(result.image_bytes)).size == (1184, 880)


def test_kontext_large_source_goes_through_an_nvcf_asset(emu, client, tmp_path):
    source = _write_image(tmp_path / "noisy.png", (1000, 800), noisy=True)
    result = client.edit(source, "add a red scarf")
    assert result.extra["edit_input"] == "asset"
    assert emu.calls["assets_create"] == 1 and emu.calls["asset_put"] == 1
    sent = emu.requests[-1]
    asset_id = result.extra["asset_id"]
    assert sent["headers"]["nvcf-input-asset-references"] == asset_id
    assert emu.assets[asset_id]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"


def test_kontext_downscales_to_1568(emu, client, tmp_path):
    source = _write_image(tmp_path / "big.png", (3000, 1500), noisy=False)
    result = client.edit(source, "brighter")
    assert max(result.extra["source_size"]) == 1568 and result.extra["edit_input"] == "inline"


def test_generator_edit_uses_kontext(emu, generator, tmp_path):
    source = ImageRef.from_file(_write_image(tmp_path / "src.png", (1024, 1024), noisy=False))
    result = generator.edit(source, "add snow", request(), tmp_path / "out")
    assert result.model == FLUX_KONTEXT and result.metadata["edit_input"] == "inline"
    assert emu.requests[-1]["model"] == FLUX_KONTEXT and (result.image.width, result.image.height) == (1024, 1024)


def test_snap_kontext_size_is_always_an_allowed_pair():
    for w, h in [(1, 1), (16, 9), (9, 16), (3, 1), (1, 3), (4, 5)]:
        assert snap_kontext_size(w, h) in KONTEXT_SIZES
    assert snap_kontext_size(16, 9) == (1392, 752)


# ----------------------------------------------------------------------------- self-hosted NIM

def test_nim_posts_to_v1_infer_and_reports_readiness(emu, tmp_path):
    with make_client(emu, api_key="", nim_url=emu.url) as c:
        generator = NvidiaGenerator(c)
        result = generator.generate(request(), tmp_path)
        assert c.nim_ready() is True
        emu.faults.nim_ready = False
        assert c.nim_ready() is False
    assert (result.provider, result.metadata["endpoint"]) == ("nim", "nim")
    assert emu.calls["infer"] == 1 and emu.calls["genai"] == 0
    assert "authorization" not in emu.requests[-1]["headers"]


def test_nim_ready_is_false_when_unreachable():
    with NvidiaClient("", nim_url="http://127.0.0.1:9", timeout=httpx.Timeout(1.0), poll_seconds=0) as c:
        assert c.nim_ready() is False


# ----------------------------------------------------------------------------- secrets

def test_api_key_never_appears_in_errors_logs_or_metadata(emu, generator, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    scenarios = [
        {"expired_key": True}, {"model_not_enabled": {FLUX_DEV}}, {"storm_429": 1, "retry_after": 0.0},
        {"error_5xx": 1}, {"malformed_json": 1}, {"truncated_image": 1}, {"not_image": 1},
        {"content_filtered": 1}, {"accept_202": True, "poll_404": True},
    ]
    seen: list[str] = []
    for scenario in scenarios:
        emu.reset()
        for name, value in scenario.items():
            setattr(emu.faults, name, value)
        with pytest.raises(ProviderError) as info:
            generator.generate(request(), tmp_path)
        seen += [str(info.value), repr(info.value), *map(str, info.value.args)]
    emu.reset()
    emu.faults.accept_202 = True
    result = generator.generate(request(), tmp_path)
    seen += [json.dumps(result.model_dump(mode="json")), repr(generator), repr(generator.client)]
    credentials = NvidiaCredentials(api_key=SENTINEL)
    seen += [repr(credentials), str(credentials)]
    seen += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert caplog.records, "expected debug logging to be exercised"
    leaks = [text for text in seen if SENTINEL in text]
    assert leaks == []


# ----------------------------------------------------------------------------- blocks

def test_blocks_build_a_paced_generator_in_memory(emu, tmp_path):
    credentials = NvidiaCredentials(api_key=SENTINEL, **endpoints(emu.url))
    provider = NvidiaImageProvider(credentials=credentials, model=FLUX_SCHNELL, rate_per_minute=6000,
                                   timeout_seconds=5, poll_seconds=0)
    generator = provider.get_generator()
    assert isinstance(generator, NvidiaGenerator) and generator.client.limiter is not None
    assert provider.account_key() == nvidia_account_key(SENTINEL) and SENTINEL not in provider.account_key()
    assert generator.generate(request(), tmp_path).model == FLUX_SCHNELL
    assert credentials.get_client(rate_per_minute=6000).limiter is generator.client.limiter


def test_nim_block_needs_no_credentials(emu, tmp_path):
    provider = NvidiaImageProvider(provider_name="nim", nim_url=emu.url, rate_per_minute=6000, timeout_seconds=5,
                                   poll_seconds=0)
    assert provider.account_key() == f"nim:{emu.url}"
    assert provider.get_generator().generate(request(), tmp_path).provider == "nim"
    with pytest.raises(ValueError, match="credentials"):
        NvidiaImageProvider().get_generator()


def test_poll_seconds_must_fit_in_the_read_timeout():
    with pytest.raises(ValueError, match="poll_seconds"):
        NvidiaClient(SENTINEL, timeout=httpx.Timeout(10.0), poll_seconds=30)


def test_provider_from_settings(emu, tmp_path):
    from imagegen.errors import SettingsError
    from imagegen.settings import ImagegenSettings
    from imagegen_flows.blocks.nvidia import nvidia_provider_from_settings, vision_reviewer_from_settings

    urls = endpoints(emu.url)
    settings = ImagegenSettings(NVIDIA_API_KEY=SENTINEL, nvidia_base_url=urls["base_url"],
                                nvcf_status_url=urls["status_url"], nvcf_assets_url=urls["assets_url"],
                                nvidia_rate_per_minute=6000)
    hosted = nvidia_provider_from_settings(settings, model=FLUX_SCHNELL)
    assert (hosted.provider_name, hosted.model, hosted.rate_per_minute) == ("nvidia", FLUX_SCHNELL, 6000)
    assert hosted.get_generator().generate(request(), tmp_path).provider == "nvidia"
    assert vision_reviewer_from_settings(settings).credentials.api_key.get_secret_value() == SENTINEL

    with pytest.raises(SettingsError, match="IMAGEGEN_NIM_URL"):
        nvidia_provider_from_settings(settings, self_hosted=True)
    nim = nvidia_provider_from_settings(settings.model_copy(update={"nim_url": emu.url}), self_hosted=True)
    assert nim.provider_name == "nim" and nim.account_key() == f"nim:{emu.url}"

    keyless = ImagegenSettings(NVIDIA_API_KEY="")
    with pytest.raises(SettingsError, match="NVIDIA_API_KEY"):
        nvidia_provider_from_settings(keyless)
    assert vision_reviewer_from_settings(keyless) is None
