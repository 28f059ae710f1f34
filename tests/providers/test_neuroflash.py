"""neuroflash client, generator and blocks against the loopback emulator (no Prefect server)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from PIL import Image

from imagegen.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    QuotaExhausted,
    TransientProviderError,
    is_transient,
)
from imagegen.models import GenerationRequest, ImageRef
from imagegen.providers.base import ImageGenerator
from imagegen.providers.neuroflash import NeuroflashGenerator
from imagegen.providers.neuroflash_account import QUOTA_FIGURE_MAX_AGE_S
from imagegen.providers.neuroflash_api import Quota, nearest_aspect_ratio, relative_image_path
from imagegen.providers.neuroflash_client import NeuroflashClient
from imagegen_flows.blocks.neuroflash import NeuroflashCredentials, NeuroflashImageProvider
from tests.emulators.neuroflash import WORKSPACE_ID, NeuroflashEmulator
from tests.emulators.serve import serve_asgi

SENTINEL = "nf-SENTINEL-secret"
CLIENT_ID = "nf-client"
ALL_RATIOS = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]


class RecordingLimiter:
    """Stands in for the shared TokenBucket: counts acquisitions and pauses, never waits."""

    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []

    def acquire(self) -> float:
        self.acquired += 1
        return 0.0

    def pause_for(self, seconds: float) -> None:
        self.pauses.append(seconds)


class _Switch:
    """One server per module; each test plugs in a fresh emulator (fast, and no shared state)."""

    target: NeuroflashEmulator | None = None

    async def __call__(self, scope, receive, send):
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def server():
    switch = _Switch()
    with serve_asgi(switch) as base_url:
        yield switch, base_url


@pytest.fixture
def emu(server) -> NeuroflashEmulator:
    switch, base_url = server
    emulator = NeuroflashEmulator(client_id=CLIENT_ID, client_secret=SENTINEL)
    emulator.base_url = base_url
    switch.target = emulator
    return emulator


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def make_client(emu, limiter):
    clients: list[NeuroflashClient] = []

    def make(**overrides) -> NeuroflashClient:
        options = dict(client_id=CLIENT_ID, client_secret=SENTINEL, api_url=f"{emu.base_url}/api",
                       token_url=f"{emu.base_url}/oauth/v2/token", timeout=5.0, limiter=limiter,
                       sleep=lambda s: None)
        options.update(overrides)
        client = NeuroflashClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> NeuroflashClient:
    return make_client()


@pytest.fixture
def generator(client) -> NeuroflashGenerator:
    return NeuroflashGenerator(client)


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Every test: neither the client secret nor an issued access token reaches a log record."""
    caplog.set_level(logging.DEBUG)
    yield
    texts = [record.getMessage() + repr(record.args) for record in caplog.records]
    assert not [t for t in texts if SENTINEL in t or "nf-at-" in t]


def request(width: int = 1920, height: int = 1080, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=kw.pop("prompt", "a clean product hero shot"), width=width, height=height,
                             seed=kw.pop("seed", 7), **kw)


def assert_clean(exc: BaseException, emu: NeuroflashEmulator) -> None:
    """No secret and no access token in what a user or a log sees of an exception."""
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert SENTINEL not in text
        for token in emu.tokens:
            assert token not in text


def generated_files(dest: Path) -> list[Path]:
    return [p for p in dest.glob("*") if not p.name.startswith(".")] if dest.exists() else []


# ---- the seed flow --------------------------------------------------------------------------


def test_seed_flow_token_workspace_quota_models_generate_history_edit_delete(emu, client, generator, limiter,
                                                                              tmp_path):
    before = client.quota()
    assert (before.available_amount, before.used_amount, before.used_amount_daily) == (88, 12, 3)
    assert before.remaining() == 47  # daily 50 - 3 is tighter than the 88 available
    assert [m.id for m in client.list_models()] == ["nano-banana-2", "square-lite"]

    made = generator.generate(request(1920, 1080, output_format="PNG"), tmp_path / "gen")

    assert made.provider == "neuroflash" and made.model == "nano-banana-2" and made.seed == 7
    assert made.metadata["seed_honoured"] is False
    assert made.metadata["aspect_ratio"] == "16:9"
    assert made.metadata["image_id"] and made.metadata["batch_id"]
    assert made.image.format == "PNG"
    assert abs(made.image.width / made.image.height - 16 / 9) < 0.05
    assert Path(made.image.path).is_file()
    sent = next(r["json"] for r in emu.requests if r["route"] == "generate")
    assert sent == {"prompt": "a clean product hero shot", "model": "nano-banana-2", "num_images": 1,
                    "aspect_ratio": "16:9", "output_format": "png"}

    after = client.quota()
    assert (after.available_amount, after.used_amount, after.used_amount_daily) == (87, 13, 4)

    history = client.history()
    assert history[0].output_image_id == made.metadata["image_id"]
    assert history[0].output_image_url == f"/api/ds-prototypes/image_generation/{made.metadata['image_id']}/view"

    source = ImageRef.from_file(made.image.path)
    edited = generator.edit(source, "make the sky a deep sunset orange",
                            request(spec={"neuroflash_image_id": made.metadata["image_id"]}), tmp_path / "edit")
    edit_call = next(r["json"] for r in emu.requests if r["route"] == "edit")
    assert edit_call["image_urls"] == [history[0].output_image_url]  # the relative path, never a URL
    assert edited.metadata["edited_from_image_id"] == made.metadata["image_id"]
    assert edited.metadata["image_id"] != made.metadata["image_id"]
    assert Path(edited.image.path).is_file()

    client.delete_image(made.metadata["image_id"])
    assert made.metadata["image_id"] not in [h.output_image_id for h in client.history()]

    report = generator.usage_report()
    assert report["before"]["available"] == 88 and report["after"]["available"] == 86
    assert report["images_spent"] == 2
    assert (report["images_generated"], report["images_edited"]) == (1, 1)

    # One token for the whole flow; every API call carried it and the workspace; the CDN got neither.
    assert emu.calls["token"] == 1
    for call in emu.requests:
        if call["route"] == "storage":
            assert "authorization" not in call["headers"]
            continue
        assert call["headers"]["authorization"].startswith("Bearer nf-at-")
        if call["route"] != "workspaces":
            assert call["headers"]["x-workspace-id"] == WORKSPACE_ID
    api_calls = sum(n for route, n in emu.calls.items() if route not in ("token", "storage"))
    assert limiter.acquired == api_calls  # token and CDN calls are not paced, API calls all are


def test_generator_satisfies_protocol_and_capabilities(generator):
    assert isinstance(generator, ImageGenerator)
    caps = generator.capabilities()
    assert caps.aspect_ratios == ALL_RATIOS
    assert caps.supports_edit and caps.negative_prompt == "fold" and caps.max_prompt_chars == 2000
    assert generator.capabilities("square-lite").aspect_ratios == ["1:1", "16:9"]


def test_negative_prompt_folded_and_format_falls_back(emu, client, tmp_path):
    generator = NeuroflashGenerator(client, model="square-lite")
    made = generator.generate(request(1080, 1920, negative_prompt="text, watermark", output_format="JPEG"),
                              tmp_path)
    sent = next(r["json"] for r in emu.requests if r["route"] == "generate")
    assert sent["prompt"].endswith("Avoid: text, watermark")
    assert sent["aspect_ratio"] == "1:1"  # nearest the model offers to 9:16
    assert sent["output_format"] == "png"  # square-lite has no jpeg
    assert made.metadata["negative_prompt"] == "folded"
    assert made.metadata["output_format_requested"] == "JPEG"


def test_configured_workspace_skips_lookup(emu, make_client):
    client = make_client(workspace_id=WORKSPACE_ID)
    client.quota()
    assert emu.calls["workspaces"] == 0


# ---- token handling -------------------------------------------------------------------------


def test_token_cached_across_calls_and_refreshed_before_expiry(emu, make_client):
    emu.expires_in = 600
    now = [1000.0]
    client = make_client(clock=lambda: now[0])
    client.quota()
    client.list_models()
    client.history()
    client.quota()
    assert emu.calls["token"] == 1
    now[0] += 600 - 60 - 1  # still inside the 60 s safety margin
    client.quota()
    assert emu.calls["token"] == 1
    now[0] += 2  # past expires_in - margin: fetch before the server would refuse it
    client.quota()
    assert emu.calls["token"] == 2


def test_short_lived_token_is_renewed_before_the_server_refuses_it(emu, client):
    emu.expires_in = 1  # the client keeps half of a short lifetime as margin
    client.quota()
    time.sleep(0.6)
    client.quota()
    assert emu.calls["token"] == 2 and emu.calls["quotas"] == 2  # no 401 round trip


def test_401_fetches_a_new_token_once_and_repeats_the_call(emu, client):
    client.quota()
    emu.set_fault("expired_token", count=1, route="history")
    assert client.history() == []
    assert emu.calls["token"] == 2
    assert emu.calls["history"] == 2


def test_second_401_raises_auth_error_without_looping(emu, client):
    client.quota()
    emu.set_fault("expired_token", count=5, route="history")
    with pytest.raises(ProviderAuthError) as caught:
        client.history()
    assert caught.value.status == 401
    assert emu.calls["token"] == 2 and emu.calls["history"] == 2
    assert_clean(caught.value, emu)


def test_401_on_generate_is_repeated_once_and_spends_once(emu, generator, tmp_path):
    emu.set_fault("expired_token", count=1, route="generate")
    generator.generate(request(), tmp_path)
    assert emu.calls["generate"] == 2  # the first answer was a 401: nothing was made
    assert emu.quota["usedAmount"] == 13


def test_rejected_credentials_raise_auth_error_without_the_secret(emu, make_client):
    emu.client_secret = "the-right-one"  # the emulator echoes the secret it was sent, like some IdPs
    client = make_client()
    with pytest.raises(ProviderAuthError) as caught:
        client.quota()
    assert "invalid_client" in str(caught.value) and CLIENT_ID in str(caught.value)
    assert "***" in str(caught.value)
    assert_clean(caught.value, emu)
    assert emu.calls["token"] == 1 and emu.calls["quotas"] == 0


# ---- quota ----------------------------------------------------------------------------------


def test_quota_checked_before_any_generation(emu, client, generator):
    emu.set_quota(available=3, used=97, used_daily=10)
    with pytest.raises(QuotaExhausted) as caught:
        generator.ensure_quota(5)
    assert "need 5 images, 3 left today" in str(caught.value)
    assert "midnight UTC" in str(caught.value)
    with pytest.raises(QuotaExhausted):
        client.generate("p", "nano-banana-2", "1:1", "png", num_images=4)
    assert emu.calls["generate"] == 0
    assert not is_transient(caught.value)


def test_daily_limit_and_fair_use_bound_the_quota(emu, client):
    emu.set_quota(available=80, used=20, used_daily=49, limit_daily=50)
    assert client.quota().remaining() == 1
    emu.set_quota(available=80, used=20, used_daily=0, limit_daily=None)
    assert client.quota().remaining() == 80
    emu.set_quota(available=80, fair_use=True)
    assert client.quota().remaining() == 0
    with pytest.raises(QuotaExhausted, match="fair-use"):
        client.ensure_quota(1)


def test_exhausted_quota_stops_before_generate(emu, generator, tmp_path):
    emu.set_fault("exhausted_quota")
    with pytest.raises(QuotaExhausted, match="need 1 images, 0 left today"):
        generator.generate(request(), tmp_path)
    assert emu.calls["generate"] == 0


@pytest.mark.parametrize("fault,status", [("quota_403", 403), ("quota_429", 429)])
def test_quota_answers_raise_quota_exhausted_without_retry(emu, generator, limiter, tmp_path, fault, status):
    emu.set_fault(fault)
    with pytest.raises(QuotaExhausted) as caught:
        generator.generate(request(), tmp_path)
    assert caught.value.status == status and not is_transient(caught.value)
    assert emu.calls["generate"] == 1
    assert limiter.pauses == []  # a quota answer is no reason to pause everyone
    assert emu.quota["usedAmount"] == 12


def test_quota_parsing_tolerates_missing_extra_and_null_fields():
    quota = Quota.model_validate({"availableAmount": 5, "somethingNew": {"a": 1}, "limitAmountDaily": None,
                                  "fairUseLimitReached": None})
    assert quota.remaining() == 5
    assert Quota.model_validate({"limitAmount": 10, "usedAmount": 4}).remaining() == 6
    assert Quota.model_validate({"availableAmount": -2}).remaining() == 0
    assert Quota.model_validate({}).remaining() is None


def test_workspace_without_images_quota_counts_as_none_left(emu, client):
    emu.quota = {}
    with pytest.raises(QuotaExhausted, match="0 left"):
        client.ensure_quota(1)
    assert emu.calls["generate"] == 0


# ---- other faults: what the user sees, nothing spent twice ----------------------------------


@pytest.mark.parametrize("retry_after", [3, None])
def test_rate_limit_storm_is_transient_and_pauses_the_account(emu, generator, limiter, tmp_path, retry_after):
    emu.set_fault("storm_429", count=2, retry_after=retry_after)
    for _ in range(2):
        with pytest.raises(TransientProviderError) as caught:
            generator.generate(request(), tmp_path)
        assert caught.value.status == 429 and is_transient(caught.value)
        assert caught.value.retry_after == (float(retry_after) if retry_after else None)
    assert limiter.pauses == [float(retry_after) if retry_after else 5.0] * 2
    assert emu.quota["usedAmount"] == 12
    generator.generate(request(), tmp_path)  # the storm is over
    assert emu.calls["generate"] == 3 and emu.quota["usedAmount"] == 13


def test_server_error_is_transient_and_spends_nothing(emu, generator, tmp_path):
    emu.set_fault("error_5xx")
    with pytest.raises(TransientProviderError) as caught:
        generator.generate(request(), tmp_path)
    assert caught.value.status == 503 and "Service temporarily unavailable" in str(caught.value)
    assert emu.calls["generate"] == 1 and emu.quota["usedAmount"] == 12


def test_slow_answer_times_out_as_transient_and_is_not_repeated(emu, make_client, tmp_path):
    generator = NeuroflashGenerator(make_client(timeout=0.3))
    emu.set_fault("slow", seconds=1.0)
    with pytest.raises(TransientProviderError, match="timed out"):
        generator.generate(request(), tmp_path)
    assert emu.calls["generate"] == 1


def test_malformed_json_after_spending_is_not_transient(emu, generator, tmp_path):
    emu.set_fault("malformed_json")
    with pytest.raises(ProviderError) as caught:
        generator.generate(request(), tmp_path)
    assert not is_transient(caught.value)
    assert "not JSON" in str(caught.value) and "not retried" in str(caught.value)
    assert emu.calls["generate"] == 1


@pytest.mark.parametrize("fault,message", [
    ("truncated_image", "not a decodable image"),
    ("not_image", "not an image"),
    ("wrong_content_type", "declared content type 'image/png' but the bytes are JPEG"),
])
def test_bad_image_download_is_reported_not_regenerated(emu, generator, tmp_path, fault, message):
    emu.set_fault(fault)
    with pytest.raises(ProviderError) as caught:
        generator.generate(request(), tmp_path)
    text = str(caught.value)
    assert message in text
    assert "quota spent" in text and emu.images and next(iter(emu.images)) in text  # names the paid image
    assert not is_transient(caught.value)
    assert emu.calls["generate"] == 1 and emu.calls["storage"] == 1
    assert generated_files(tmp_path) == []


def test_transient_download_failure_retries_the_download_only(emu, generator, tmp_path):
    emu.set_fault("error_5xx", route="storage", count=2)
    made = generator.generate(request(), tmp_path)
    assert Path(made.image.path).is_file()
    assert emu.calls["generate"] == 1 and emu.calls["storage"] == 3


def test_download_size_cap(emu, make_client, tmp_path):
    generator = NeuroflashGenerator(make_client(max_download_bytes=100))
    with pytest.raises(ProviderError, match="byte cap"):
        generator.generate(request(), tmp_path)
    assert emu.calls["generate"] == 1


def test_model_not_allowed(emu, generator, tmp_path):
    emu.set_fault("model_not_allowed")
    with pytest.raises(ProviderRequestInvalid) as caught:
        generator.generate(request(), tmp_path)
    assert "'nano-banana-2' is not allowed" in str(caught.value)
    assert "square-lite" in str(caught.value)
    assert emu.calls["generate"] == 0


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("args,field,allowed", [
    (("flux-9000", "1:1", "png", 1), "model", "['nano-banana-2', 'square-lite']"),
    (("nano-banana-2", "7:3", "png", 1), "aspect_ratio", str(ALL_RATIOS)),
    (("square-lite", "9:16", "png", 1), "aspect_ratio", "['1:1', '16:9']"),
    (("nano-banana-2", "1:1", "gif", 1), "output_format", "['jpeg', 'png', 'webp']"),
    (("nano-banana-2", "1:1", "png", 5), "num_images", "1..4"),
    (("square-lite", "1:1", "png", 2), "num_images", "1..1"),
])
def test_validation_names_the_field_and_allowed_values(emu, client, args, field, allowed):
    with pytest.raises(ProviderRequestInvalid) as caught:
        client.validate(*args)
    assert field in str(caught.value) and allowed in str(caught.value)
    with pytest.raises(ProviderRequestInvalid):
        client.generate("p", *args[:3], num_images=args[3])
    assert emu.calls["generate"] == 0 and emu.calls["quotas"] == 0


def test_validation_requires_text2image(emu, client):
    emu.models[1]["capabilities"] = ["image2image"]
    with pytest.raises(ProviderRequestInvalid, match="text2image"):
        client.validate("square-lite", "1:1", "png", 1)


def test_api_validation_errors_are_request_invalid_with_field_text(emu, client):
    # Skip the client-side check to see how a 422 from the API reads.
    client.ensure_quota(1)
    with pytest.raises(ProviderRequestInvalid) as caught:
        client._request("POST", "/ds-prototypes/image_generation/",
                        json={"prompt": "p", "model": "nano-banana-2", "aspect_ratio": "7:3", "output_format": "png"})
    assert caught.value.status == 422 and "aspect_ratio: unsupported aspect ratio" in str(caught.value)


def test_overlong_prompt_is_refused_before_spending(emu, generator, tmp_path):
    with pytest.raises(ProviderRequestInvalid, match="prompt"):
        generator.generate(request(prompt="x" * 2001), tmp_path)
    assert emu.calls["generate"] == 0


@pytest.mark.parametrize("width,height,allowed,expected", [
    (1920, 1080, ALL_RATIOS, "16:9"),
    (1080, 1920, ALL_RATIOS, "9:16"),
    (1000, 1000, ALL_RATIOS, "1:1"),
    (2560, 1080, ALL_RATIOS, "21:9"),
    (1200, 1000, ALL_RATIOS, "5:4"),
    (1500, 1000, ALL_RATIOS, "3:2"),
    (1080, 1350, ALL_RATIOS, "4:5"),
    (1200, 628, ALL_RATIOS, "16:9"),  # 1.91:1 social card
    (1080, 1920, ["1:1", "16:9"], "1:1"),
    (4000, 1000, ["1:1", "bogus", "16:9"], "16:9"),
])
def test_nearest_aspect_ratio(width, height, allowed, expected):
    assert nearest_aspect_ratio(width, height, allowed) == expected


def test_nearest_aspect_ratio_rejects_nonsense():
    with pytest.raises(ValueError):
        nearest_aspect_ratio(0, 100, ALL_RATIOS)
    with pytest.raises(ValueError):
        nearest_aspect_ratio(100, 100, ["square"])


# ---- edit, history, delete ------------------------------------------------------------------


def test_relative_image_path():
    path = "/api/ds-prototypes/image_generation/abc/view"
    assert relative_image_path(path) == path
    assert relative_image_path(f"https://app.neuroflash.com{path}") == path
    with pytest.raises(ProviderRequestInvalid, match="relative image path"):
        relative_image_path("https://cdn.example.com/generated/abc.png")


def test_edit_converts_an_absolute_url_to_the_relative_path(emu, client, generator, tmp_path):
    made = generator.generate(request(), tmp_path)
    result = client.edit_path(f"{emu.base_url}/api/ds-prototypes/image_generation/{made.metadata['image_id']}/view",
                              "warmer light")
    assert result.images
    assert next(r["json"] for r in emu.requests if r["route"] == "edit")["image_urls"][0].startswith("/api/")
    # The emulator is as strict as the real service: an absolute URL in image_urls is a 500.
    with pytest.raises(TransientProviderError) as caught:
        client._request("POST", "/ds-prototypes/edit",
                        json={"prompt": "x", "image_urls": [f"{emu.base_url}/api/ds-prototypes/image_generation/"
                                                            f"{made.metadata['image_id']}/view"]})
    assert caught.value.status == 500


def test_edit_accepts_a_history_style_answer(emu, generator, tmp_path):
    emu.edit_response_shape = "history_item"
    made = generator.generate(request(1080, 1350), tmp_path / "a")
    edited = generator.edit(ImageRef.from_file(made.image.path), "add a plant",
                            request(spec={"neuroflash_image_id": made.metadata["image_id"]}), tmp_path / "b")
    assert emu.calls["view"] == 1  # fetched through the API with auth, not from the CDN
    # the source is named by its relative path, built from the image id: no history page is read
    sent = next(r["json"] for r in emu.requests if r["route"] == "edit")
    assert sent["image_urls"] == [f"/api/ds-prototypes/image_generation/{made.metadata['image_id']}/view"]
    assert emu.calls["history"] == 0
    with Image.open(edited.image.path) as im:
        assert abs(im.width / im.height - 4 / 5) < 0.05


def test_edit_needs_a_neuroflash_image_id(emu, generator, tmp_path):
    made = generator.generate(request(), tmp_path)
    source = ImageRef.from_file(made.image.path)
    with pytest.raises(ProviderRequestInvalid, match="neuroflash_image_id"):
        generator.edit(source, "x", request(), tmp_path)
    assert emu.calls["edit"] == 0
    # an id the workspace does not know: the API's 404 for its path, nothing spent, no history read
    with pytest.raises(ProviderRequestInvalid) as caught:
        generator.edit(source, "x", request(spec={"neuroflash_image_id": "no-such-image"}), tmp_path)
    assert caught.value.status == 404 and "unknown id or route" in str(caught.value)
    assert (emu.calls["edit"], emu.calls["history"], emu.quota["usedAmount"]) == (1, 0, 13)


def test_edit_checks_quota_first(emu, generator, tmp_path):
    emu.set_quota(available=1, limit_daily=None)
    made = generator.generate(request(), tmp_path)  # reads the quota (1 left), then spends it
    with pytest.raises(QuotaExhausted, match="need 1 images, 0 left"):
        generator.edit(ImageRef.from_file(made.image.path), "x",
                       request(spec={"neuroflash_image_id": made.metadata["image_id"]}), tmp_path)
    # the figure said no room, so the quota was read again before refusing; nothing was sent
    assert (emu.calls["quotas"], emu.calls["edit"]) == (2, 0)


def test_spends_are_checked_against_the_last_quota_figure_not_a_read_each(emu, make_client, tmp_path):
    now = [1000.0]
    generator = NeuroflashGenerator(make_client(clock=lambda: now[0]))
    generator.ensure_quota(3)  # the run's pre-flight read
    for _ in range(3):
        generator.generate(request(), tmp_path)
    assert (emu.calls["quotas"], emu.calls["generate"]) == (1, 3)
    now[0] += QUOTA_FIGURE_MAX_AGE_S  # an old figure is read again before the next spend
    generator.generate(request(), tmp_path)
    assert (emu.calls["quotas"], emu.calls["generate"]) == (2, 4)


def test_a_figure_without_room_is_read_again_and_a_reset_limit_is_used(emu, generator, tmp_path):
    emu.set_quota(available=50, used_daily=49, limit_daily=50)
    generator.generate(request(), tmp_path)  # the figure now says 0 left today
    emu.set_quota(available=49, used_daily=0, limit_daily=50)  # midnight UTC: the daily limit reset
    generator.generate(request(), tmp_path)
    assert (emu.calls["quotas"], emu.calls["generate"]) == (2, 2)


def test_the_apis_refusal_stays_final_when_the_figure_was_wrong(emu, generator, tmp_path):
    generator.ensure_quota(2)
    emu.set_fault("exhausted_quota")  # spent elsewhere since the read: the figure still says 47
    with pytest.raises(QuotaExhausted) as caught:
        generator.generate(request(), tmp_path)
    assert caught.value.status == 403 and not is_transient(caught.value)
    assert emu.calls["generate"] == 1 and emu.quota["usedAmount"] == 12


def test_delete_uses_the_image_id_never_the_batch_id(emu, make_client, generator, tmp_path):
    made = generator.generate(request(), tmp_path)
    batch_id = made.metadata["batch_id"]
    with pytest.raises(ProviderRequestInvalid, match="batch_id"):
        generator.client.delete_image(batch_id)  # caught client-side: this client saw that batch
    assert emu.calls["delete"] == 0
    with pytest.raises(ProviderRequestInvalid) as caught:
        make_client().delete_image(batch_id)  # a fresh client: the API's 404
    assert caught.value.status == 404
    generator.client.delete_image(made.metadata["image_id"])
    assert emu.history == []


# ---- blocks and secrets ---------------------------------------------------------------------


def test_blocks_build_a_working_generator(emu, tmp_path):
    credentials = NeuroflashCredentials(client_id=CLIENT_ID, client_secret=SENTINEL,
                                        api_url=f"{emu.base_url}/api", token_url=f"{emu.base_url}/oauth/v2/token")
    provider = NeuroflashImageProvider(credentials=credentials, rate_per_minute=6000, output_format="webp")
    assert provider.account_key() == f"neuroflash:{CLIENT_ID}"
    generator = provider.get_generator()
    made = generator.generate(request(output_format="PNG"), tmp_path)
    assert made.image.format == "WEBP"
    for text in (repr(credentials), str(credentials), repr(provider), repr(generator), repr(generator.client),
                 str(provider.model_dump()), str(made.model_dump())):
        assert SENTINEL not in text
        for token in emu.tokens:
            assert token not in text
    generator.client.close()


def test_no_secret_in_any_error_or_metadata(emu, make_client, tmp_path):
    errors: list[BaseException] = []
    generator = NeuroflashGenerator(make_client())
    made = generator.generate(request(), tmp_path)
    assert SENTINEL not in str(made.model_dump()) and "nf-at-" not in str(made.model_dump())
    for fault, kwargs in [("storm_429", {}), ("error_5xx", {}), ("quota_403", {}), ("malformed_json", {}),
                          ("not_image", {}), ("expired_token", {"count": 2, "route": "generate"})]:
        emu.faults.clear()
        emu.set_fault(fault, **kwargs)
        with pytest.raises(ProviderError) as caught:
            generator.generate(request(), tmp_path)
        errors.append(caught.value)
    for exc in errors:
        assert_clean(exc, emu)
