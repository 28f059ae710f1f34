"""Credentials in the providers' URL settings (user info, ?token=) never show in their messages, reprs or
rate-limit keys, nor in the reprs of the blocks that hold them, even when a server echoes them back.

The end-to-end check (a real run per URL variable, searched everywhere for the sentinels) is
tests/faults/test_fault_secrets.py; these pin each place down on its own.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from pydantic import SecretStr

from imagegen.errors import ProviderAuthError, ProviderRequestInvalid, SettingsError
from imagegen.providers.neuroflash_client import NeuroflashClient
from imagegen.providers.nvidia import NvidiaClient, nvidia_account_key
from imagegen.providers.nvidia_models import FLUX_DEV, generation_payload, rules_for
from imagegen.providers.vlm import VisionReviewer
from imagegen_flows.blocks.gitlab import GitLabCredentials
from imagegen_flows.blocks.neuroflash import NeuroflashCredentials
from imagegen_flows.blocks.nvidia import NvidiaCredentials, NvidiaImageProvider, NvidiaVisionReviewer
from imagegen_flows.blocks.supabase import SupabaseCredentials

PASSWORD, TOKEN = "pw-SENTINEL-url-9d1f", "tok-SENTINEL-url-4c2e"
BASIC = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
NEEDLES = (PASSWORD, TOKEN, BASIC)


def secret_url(path: str = "") -> str:
    return f"http://user:{PASSWORD}@127.0.0.1:9{path}?token={TOKEN}"


def assert_masked(text: str) -> None:
    assert [n for n in NEEDLES if n in text] == [], text
    assert "user:***@" in text, text


def echoing(status: int) -> httpx.MockTransport:
    """A server that refuses everything and echoes the request line and credentials it got."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"title": "refused", "detail": f"{request.method} {request.url} "
                                            f"with {request.headers.get('authorization')!r}"})
    return httpx.MockTransport(handler)


def test_an_nvidia_error_names_the_endpoint_masked_and_scrubs_the_echo():
    client = NvidiaClient("nvapi-key", base_url=secret_url("/v1/genai"), transport=echoing(401))
    payload = generation_payload(rules_for(FLUX_DEV), "a mug", width=1024, height=1024, seed=1)
    with pytest.raises(ProviderAuthError) as caught:
        client.infer(FLUX_DEV, payload)
    assert_masked(str(caught.value))
    assert_masked(repr(client))


def test_a_vlm_error_and_repr_are_masked(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "x.png")
    reviewer = VisionReviewer("nvapi-key", base_url=secret_url("/v1"), status_url=secret_url("/status"),
                              transport=echoing(404))
    with pytest.raises(ProviderRequestInvalid) as caught:
        reviewer.ask(tmp_path / "x.png", "describe")
    assert_masked(str(caught.value))
    assert_masked(repr(reviewer))


def test_a_neuroflash_token_error_and_the_reprs_are_masked():
    client = NeuroflashClient("nf-id", SecretStr("nf-secret"), api_url=secret_url("/api"),
                              token_url=secret_url("/oauth/v2/token"), transport=echoing(401), limiter=None)
    with pytest.raises(ProviderAuthError) as caught:
        client.quota()
    assert_masked(str(caught.value))
    assert_masked(repr(client))
    assert_masked(repr(client._tokens))


def test_a_nim_rate_limit_key_is_masked():
    assert_masked(nvidia_account_key(None, secret_url()))


@pytest.mark.parametrize("block", [
    NvidiaCredentials(api_key="k", base_url=secret_url(), status_url=secret_url(), assets_url=secret_url()),
    NvidiaImageProvider(nim_url=secret_url()),
    NvidiaVisionReviewer(credentials=NvidiaCredentials(api_key="k"), base_url=secret_url()),
    NeuroflashCredentials(client_id="id", client_secret="s", api_url=secret_url(), token_url=secret_url()),
    SupabaseCredentials(url=secret_url(), key="k"),
    GitLabCredentials(url=secret_url(), token="t"),
], ids=lambda block: type(block).__name__)
def test_block_reprs_mask_their_url_fields(block):
    assert_masked(repr(block))
    assert_masked(str(block))
    assert PASSWORD in block.model_dump_json()  # the block itself keeps the URL it must call


@pytest.mark.parametrize("url", [f"user:{PASSWORD}@db/assets?token={TOKEN}", f"mysql://user:{PASSWORD}@db/x?token={TOKEN}"])
def test_a_catalog_url_that_is_not_a_catalog_is_named_masked(url, tmp_path):
    from imagegen.settings import ImagegenSettings
    from imagegen_flows.blocks.resolve import catalog_block

    with pytest.raises(SettingsError) as caught:
        catalog_block(ImagegenSettings(catalog_url=url), tmp_path)
    assert_masked(str(caught.value))
