"""The stores are checked before any spend: a bucket or project that is missing, refuses the
credentials or cannot be reached, a token that may not write, a local store root that is a file.

`imagegen run` answers each with exit 1 and one `error:` line naming the brief field
(publish.small_store / publish.large_store), the store and the reason, never a traceback and never a
secret. Nothing is written (no probe object stays in the store either) and the provider gets no
generation request. A healthy Supabase/GitLab pair passes and keeps no probe object.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

# Imported at collection, not first inside a test under capsys: see test_fault_bad_credentials.
import imagegen_flows.flows.campaign  # noqa: F401
from imagegen.stores.supabase import PREFLIGHT_PREFIX
from imagegen_flows.deployments.cli import validate
from tests.emulators.gitlab import PROJECT_ID, PROJECT_PATH
from tests.emulators.serve import _free_port
from tests.faults.conftest import write_brief
from tests.faults.test_fault_preflight import SMALL_NVIDIA, SMALL_TARGET, assert_untouched, refusal, run
from tests.stores import conftest as store_fixtures
from tests.stores.conftest import GITLAB_TOKEN, SUPABASE_KEY

PREFLIGHT_SECONDS = 15  # a refused or hanging store answers within its 5 s timeout, plus start-up

# The store tests' emulators, as fixtures of this module.
supabase_emulator = store_fixtures.supabase_emulator
supabase_emu = store_fixtures.supabase_emu
gitlab_emu = store_fixtures.gitlab_emu


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def stores_env(supabase_emu, gitlab_emu, monkeypatch):
    """Supabase as the small-file store and GitLab as the large one, both emulated and healthy."""
    supabase, supabase_url = supabase_emu
    gitlab, gitlab_url = gitlab_emu
    monkeypatch.setenv("SUPABASE_URL", supabase_url)
    monkeypatch.setenv("SUPABASE_KEY", SUPABASE_KEY)
    monkeypatch.setenv("GITLAB_URL", gitlab_url)
    monkeypatch.setenv("GITLAB_TOKEN", GITLAB_TOKEN)
    monkeypatch.setenv("IMAGEGEN_GITLAB_PROJECT", str(PROJECT_ID))
    monkeypatch.delenv("IMAGEGEN_SUPABASE_BUCKET", raising=False)
    return supabase, gitlab


@pytest.fixture
def brief(tmp_path) -> Path:
    return write_brief(tmp_path / "briefs", "store-preflight", provider=SMALL_NVIDIA, targets=SMALL_TARGET,
                       publish={"small_store": "supabase", "large_store": "gitlab"})


def assert_no_probe_left(supabase, gitlab) -> None:
    assert supabase.objects == {}, f"objects left in Supabase: {list(supabase.objects)}"
    assert gitlab.uploads == {} and gitlab.package_files == {}, "files left in GitLab"


def assert_no_secret(line: str) -> None:
    for secret in (SUPABASE_KEY, GITLAB_TOKEN):
        assert secret not in line, line


# --------------------------------------------------------------------------- Supabase Storage

def test_a_missing_bucket_exits_1_naming_the_bucket(nvidia, stores_env, brief, out, capsys, monkeypatch):
    supabase, gitlab = stores_env
    monkeypatch.setenv("IMAGEGEN_SUPABASE_BUCKET", "no-such-bucket")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == ("error: publish.small_store: store 'supabase' cannot be used: Supabase Storage bucket "
                    "'no-such-bucket' does not exist (HTTP 404); check IMAGEGEN_SUPABASE_BUCKET; check the "
                    "environment variables SUPABASE_URL, SUPABASE_KEY, IMAGEGEN_SUPABASE_BUCKET")
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)


def test_a_rejected_supabase_key_exits_1_without_the_key(nvidia, stores_env, brief, out, capsys, monkeypatch):
    supabase, gitlab = stores_env
    monkeypatch.setenv("SUPABASE_KEY", "sb-SENTINEL-wrong")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: publish.small_store: store 'supabase' cannot be used: writing a probe object "
                           "to Supabase Storage bucket 'media-assets', key '.imagegen-preflight/': Supabase "
                           "refused the credentials (HTTP 401); check SUPABASE_KEY"), line
    assert "sb-SENTINEL-wrong" not in line
    assert_no_secret(line)
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)


def test_an_unreachable_supabase_is_found_in_seconds(nvidia, stores_env, brief, out, capsys, monkeypatch):
    supabase, gitlab = stores_env
    closed = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("SUPABASE_URL", closed)
    started = time.monotonic()
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert time.monotonic() - started < PREFLIGHT_SECONDS
    assert line == (f"error: publish.small_store: store 'supabase' cannot be used: Supabase Storage bucket "
                    f"'media-assets': cannot reach {closed} (ConnectError); check the environment variables "
                    "SUPABASE_URL, SUPABASE_KEY, IMAGEGEN_SUPABASE_BUCKET")
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- GitLab

def test_an_unknown_gitlab_project_exits_1(nvidia, stores_env, brief, out, capsys, monkeypatch):
    supabase, gitlab = stores_env
    monkeypatch.setenv("IMAGEGEN_GITLAB_PROJECT", "acme/no-such-project")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == ("error: publish.large_store: store 'gitlab' cannot be used: opening GitLab project "
                    "'acme/no-such-project': HTTP 404: 404 Project Not Found; check the environment variables "
                    "GITLAB_URL, GITLAB_TOKEN, IMAGEGEN_GITLAB_PROJECT")
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)


@pytest.mark.parametrize("level, role", [(20, "its role is Reporter"), (None, "it is not a member")])
def test_a_gitlab_token_without_write_access_exits_1(nvidia, stores_env, brief, out, capsys, level, role):
    supabase, gitlab = stores_env
    gitlab.access_level = level
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == (f"error: publish.large_store: store 'gitlab' cannot be used: GitLab project '{PROJECT_ID}': "
                    f"the token may not write to the project ({role}); it needs at least the Developer role and "
                    "the api scope; check the environment variables GITLAB_URL, GITLAB_TOKEN, "
                    "IMAGEGEN_GITLAB_PROJECT")
    assert gitlab.calls_to("POST", "/uploads") == [] and gitlab.calls_to("PUT", "/packages") == []
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)


def test_an_administrators_token_writes_without_being_a_member(nvidia, stores_env, brief, out):
    supabase, gitlab = stores_env
    gitlab.access_level, gitlab.is_admin = None, True
    validate(str(brief), None, out)
    assert [c.path for c in gitlab.calls] == [f"/api/v4/projects/{PROJECT_ID}", "/api/v4/user"]
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)


def test_a_rejected_gitlab_token_exits_1_without_the_token(nvidia, stores_env, brief, out, capsys, monkeypatch):
    supabase, gitlab = stores_env
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-SENTINEL-wrong")
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line.startswith("error: publish.large_store: store 'gitlab' cannot be used: opening GitLab project "
                           f"'{PROJECT_ID}': GitLab rejected the token (HTTP 401)"), line
    assert "glpat-SENTINEL-wrong" not in line
    assert_no_secret(line)
    assert_untouched(nvidia, out)


def test_an_unreachable_gitlab_is_found_in_seconds(nvidia, stores_env, brief, out, capsys, monkeypatch):
    monkeypatch.setenv("GITLAB_URL", f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert time.monotonic() - started < PREFLIGHT_SECONDS
    assert line == (f"error: publish.large_store: store 'gitlab' cannot be used: opening GitLab project "
                    f"'{PROJECT_ID}': transport error (ConnectionError); check the environment variables "
                    "GITLAB_URL, GITLAB_TOKEN, IMAGEGEN_GITLAB_PROJECT")
    assert_untouched(nvidia, out)


# --------------------------------------------------------------------------- local folder

def test_a_local_store_root_that_is_a_file_exits_1(nvidia, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "assets").write_text("not a folder")
    brief = write_brief(tmp_path / "briefs", "store-preflight-local", provider=SMALL_NVIDIA, targets=SMALL_TARGET)
    line = refusal(*run(capsys, brief, "--out", str(out)))
    assert line == (f"error: publish.small_store and publish.large_store: store 'local' cannot be used: local "
                    f"store 'local': {out / 'assets'} is a file, not a folder")
    assert sorted(p.name for p in out.iterdir()) == ["assets"]
    assert (out / "assets").read_text() == "not a folder"
    assert_untouched(nvidia)


# --------------------------------------------------------------------------- healthy stores

def test_a_healthy_supabase_and_gitlab_pair_passes_and_keeps_no_probe(nvidia, stores_env, brief, out):
    supabase, gitlab = stores_env
    validate(str(brief), None, out)
    assert_no_probe_left(supabase, gitlab)
    uploads = supabase.calls_to("POST", "/storage/v1/object/")
    assert len(uploads) == 1 and f"/{PREFLIGHT_PREFIX}/" in uploads[0].path, uploads
    assert len(supabase.calls_to("DELETE", "/storage/v1/object/")) == 1
    assert [c.method for c in gitlab.calls] == ["GET"], gitlab.calls  # the project and its permissions only
    assert_untouched(nvidia, out)


def test_a_gitlab_project_named_by_path_passes(nvidia, stores_env, brief, out, monkeypatch):
    supabase, gitlab = stores_env
    monkeypatch.setenv("IMAGEGEN_GITLAB_PROJECT", PROJECT_PATH)
    validate(str(brief), None, out)
    assert_no_probe_left(supabase, gitlab)
    assert_untouched(nvidia, out)
