"""One httpx.Client per provider configuration per process (imagegen.providers.http.shared_client):
tasks that each build a generator share the client, its TLS context and its connections; another key,
base URL or timeout gets another client; secrets never appear in the cache keys; closing a generator's
client leaves the shared one open; threads share it safely."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from imagegen.providers import http as shared_http
from imagegen.providers.neuroflash_client import NeuroflashClient
from imagegen.providers.nvidia import NvidiaClient
from imagegen_flows.blocks.neuroflash import NeuroflashCredentials, NeuroflashImageProvider
from imagegen_flows.blocks.nvidia import NvidiaCredentials, NvidiaImageProvider, NvidiaVisionReviewer
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.nvidia import NvidiaEmulator, endpoints
from tests.emulators.serve import serve_asgi

KEY_A, KEY_B = "nvapi-SENTINEL-shared-a-0123456789", "nvapi-SENTINEL-shared-b-9876543210"
NF_ID, NF_SECRET = "nf-shared-client", "nf-SENTINEL-shared-secret"


def _served_nvidia(api_key: str):
    emulator = NvidiaEmulator(api_key=api_key)
    with serve_asgi(emulator.app) as url:
        emulator.url = url
        yield emulator


@pytest.fixture(scope="module")
def nvidia_a():
    yield from _served_nvidia(KEY_A)


@pytest.fixture(scope="module")
def nvidia_b():
    yield from _served_nvidia(KEY_B)


@pytest.fixture(scope="module")
def neuroflash():
    emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET)
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


def nvidia_provider(emu, key: str, **options) -> NvidiaImageProvider:
    urls = endpoints(emu.url)
    credentials = NvidiaCredentials(api_key=key, base_url=urls["base_url"], status_url=urls["status_url"],
                                    assets_url=urls["assets_url"])
    return NvidiaImageProvider(credentials=credentials, rate_per_minute=60_000, poll_seconds=0, **options)


def neuroflash_provider(emu, secret: str = NF_SECRET, client_id: str = NF_ID) -> NeuroflashImageProvider:
    return NeuroflashImageProvider(credentials=NeuroflashCredentials(
        client_id=client_id, client_secret=secret, api_url=f"{emu.base_url}/api",
        token_url=f"{emu.base_url}/oauth/v2/token"), rate_per_minute=60_000)


def test_generators_of_one_block_share_one_client(nvidia_a, neuroflash):
    provider = nvidia_provider(nvidia_a, KEY_A)
    first, second = provider.get_generator(), provider.get_generator()
    assert first.client is not second.client, "generators keep their own state (limiter use, counters)"
    assert first.client._http is second.client._http
    nf = neuroflash_provider(neuroflash)
    assert nf.get_generator().client._http is nf.get_generator().client._http


@pytest.mark.parametrize("change", ["key", "base_url", "timeout", "nim_url"])
def test_another_key_url_or_timeout_gets_another_client(nvidia_a, nvidia_b, change):
    base = nvidia_provider(nvidia_a, KEY_A).get_generator().client._http
    other = {
        "key": lambda: nvidia_provider(nvidia_a, KEY_B),
        "base_url": lambda: nvidia_provider(nvidia_b, KEY_A),
        "timeout": lambda: nvidia_provider(nvidia_a, KEY_A, timeout_seconds=91.0),
        "nim_url": lambda: nvidia_provider(nvidia_a, KEY_A, nim_url=nvidia_a.url),
    }[change]()
    assert other.get_generator().client._http is not base


def test_neuroflash_accounts_never_share_a_client(neuroflash):
    """Same endpoints, another secret or client ID: another client (a cookie jar is one account's)."""
    clients = {id(neuroflash_provider(neuroflash, secret=s, client_id=c).get_generator().client._http)
               for s, c in ((NF_SECRET, NF_ID), ("other-secret", NF_ID), (NF_SECRET, "other-client"))}
    assert len(clients) == 3


def test_swapping_the_environment_reaches_the_right_emulator_with_the_right_key(nvidia_a, nvidia_b, monkeypatch,
                                                                                tmp_path):
    """What a test suite does between tests: point NVIDIA_API_KEY and the URLs at another emulator."""
    from imagegen.models import GenerationRequest
    from imagegen.settings import load_settings
    from imagegen_flows.blocks.nvidia import nvidia_provider_from_settings

    for emu, key in ((nvidia_a, KEY_A), (nvidia_b, KEY_B), (nvidia_a, KEY_A)):
        urls = endpoints(emu.url)
        monkeypatch.setenv("NVIDIA_API_KEY", key)
        monkeypatch.setenv("IMAGEGEN_NVIDIA_BASE_URL", urls["base_url"])
        monkeypatch.setenv("IMAGEGEN_NVCF_STATUS_URL", urls["status_url"])
        monkeypatch.setenv("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "60000")
        spent = emu.spent
        generator = nvidia_provider_from_settings(load_settings()).get_generator()
        generator.generate(GenerationRequest(prompt="a mug", width=1024, height=1024, seed=3), tmp_path)
        assert emu.spent == spent + 1, "the request went to another emulator or was refused"


def test_closing_a_generator_client_leaves_the_shared_client_open(nvidia_a):
    provider = nvidia_provider(nvidia_a, KEY_A)
    done = provider.get_generator()
    done.client.close()
    again = provider.get_generator()
    assert again.client._http is done.client._http and not again.client._http.is_closed
    assert again.client._http.get(f"{nvidia_a.url}/v1/health/ready").status_code == 200


def test_a_caller_transport_gets_a_private_client_that_close_closes():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    client = NvidiaClient(KEY_A, transport=transport, poll_seconds=0)
    assert client._http is not NvidiaClient(KEY_A, transport=transport, poll_seconds=0)._http
    client.close()
    assert client._http.is_closed
    nf = NeuroflashClient(NF_ID, NF_SECRET, transport=transport)
    nf.close()
    assert nf._http.is_closed


def test_no_secret_in_the_cache_keys_or_a_plain_hash_of_one(nvidia_a, neuroflash):
    nvidia_provider(nvidia_a, KEY_A).get_generator()
    neuroflash_provider(neuroflash).get_generator()
    NvidiaVisionReviewer(credentials=NvidiaCredentials(api_key=KEY_B)).get_reviewer()
    keys = " ".join(shared_http._shared_clients)
    for secret in (KEY_A, KEY_B, NF_SECRET):
        assert secret not in keys
        assert hashlib.sha256(secret.encode()).hexdigest()[:12] not in keys
    assert all(len(key) == 64 for key in shared_http._shared_clients)


def test_threads_building_generators_at_once_share_one_client_and_all_requests_succeed(nvidia_a):
    provider = nvidia_provider(nvidia_a, KEY_A, timeout_seconds=77.0)  # a configuration no other test uses
    start = threading.Barrier(8)

    def task(_: int) -> tuple[int, int]:
        start.wait()
        client = provider.get_generator().client
        return id(client._http), client._http.get(f"{nvidia_a.url}/v1/health/ready").status_code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(task, range(32)))
    assert {status for _, status in results} == {200}
    assert len({client for client, _ in results}) == 1


def test_the_tls_context_is_built_once_per_process(monkeypatch):
    """The point of sharing: certifi's CA bundle is parsed once, not once per task (~20 ms CPU each)."""
    built = []
    real = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *a, **k: built.append(1) or real(*a, **k))
    monkeypatch.setattr(shared_http, "_ssl_contexts", {})
    for timeout in range(10):  # ten configurations, ten clients
        NvidiaClient(KEY_A, base_url=f"https://example.invalid/{timeout}", timeout=30.0 + timeout, poll_seconds=0)
    assert len(built) == 1


def test_a_forked_child_builds_its_own_client(nvidia_a):
    import os

    provider = nvidia_provider(nvidia_a, KEY_A)
    parent = provider.get_generator().client._http  # held: the child must not get this object back
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a new client that works, then leave at once
        try:
            http = provider.get_generator().client._http
            ok = http is not parent and http.get(f"{nvidia_a.url}/v1/health/ready").status_code == 200
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert provider.get_generator().client._http is parent
