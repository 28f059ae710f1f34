"""`imagegen setup` against a real Prefect server: the first run creates, the second changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imagegen.settings import load_settings
from imagegen_flows.deployments.setup import block_types, rate_limits

POOL = "imagegen-process"
SENTINEL_KEY = "nvapi-SENTINEL-setup"  # what conftest's setup_runs puts in NVIDIA_API_KEY
SLUGS = {t.get_block_type_slug() for t in block_types()}
LIMITS = set(rate_limits(load_settings()))


def lines(output: str) -> dict[str, set[str]]:
    """outcome -> the objects reported with it"""
    found: dict[str, set[str]] = {}
    for line in output.splitlines():
        outcome, _, what = line.partition(" ")
        if outcome in ("created", "updated", "unchanged"):
            found.setdefault(outcome, set()).add(what.strip())
    return found


def test_first_run_creates_everything(setup_runs):
    report = lines(setup_runs.first.stdout)
    assert set(report) == {"created"}, setup_runs.first.stdout
    created = report["created"]
    assert {f"block type {slug}" for slug in SLUGS} <= created
    assert {"block imagegen-local-provider/local", "block imagegen-nvidia-credentials/nvidia",
            "block imagegen-nvidia-image-provider/nvidia", "block imagegen-nvidia-vision-reviewer/nvidia-vlm"} <= created
    assert {w for w in created if w.startswith("concurrency limit")} == {
        "concurrency limit imagegen-nvidia-rate (40/min)", "concurrency limit imagegen-neuroflash-rate (30/min)"}
    assert f"work pool {POOL} (process)" in created

    state = setup_runs.state_after_first
    assert SLUGS <= set(state["block_types"])
    assert {("imagegen-local-provider", "local"), ("imagegen-nvidia-credentials", "nvidia"),
            ("imagegen-nvidia-image-provider", "nvidia"),
            ("imagegen-nvidia-vision-reviewer", "nvidia-vlm")} <= set(state["documents"])
    assert {name: value[:3] for name, value in state["limits"].items()} == {
        "imagegen-nvidia-rate": (40, pytest.approx(40 / 60), True),
        "imagegen-neuroflash-rate": (30, pytest.approx(30 / 60), True)}
    assert state["pools"][POOL][0] == "process"


def test_second_run_changes_nothing(setup_runs):
    report = lines(setup_runs.second.stdout)
    assert set(report) == {"unchanged"}, setup_runs.second.stdout
    assert report["unchanged"] == lines(setup_runs.first.stdout)["created"]
    # the server agrees: no block type, block document, limit or pool was written again
    assert setup_runs.state_after_second == setup_runs.state_after_first


def test_saved_block_holds_the_key_and_setup_never_prints_it(prefect_server, setup_runs):
    for run in (setup_runs.first, setup_runs.second):
        assert SENTINEL_KEY not in run.stdout + run.stderr
        assert "SENTINEL" not in run.stdout + run.stderr
    with prefect_server.client() as client:
        document = client.read_block_document_by_name("nvidia", "imagegen-nvidia-credentials")
    assert SENTINEL_KEY in str(document.data)  # saved (as a secret), so a worker can use the block


def test_the_key_is_saved_once_and_rotating_it_is_one_edit(prefect_server, setup_runs):
    """The provider and the reviewer refer to one named credentials block (as S3Bucket refers to
    AwsCredentials): an edit of that block, as the UI makes it, reaches both."""
    from prefect.client.schemas.actions import BlockDocumentUpdate

    rotated = "nvapi-SENTINEL-rotated"
    with prefect_server.client() as client:
        credentials = client.read_block_document_by_name("nvidia", "imagegen-nvidia-credentials")
        users = [client.read_block_document_by_name(name, slug) for name, slug in
                 (("nvidia", "imagegen-nvidia-image-provider"), ("nvidia-vlm", "imagegen-nvidia-vision-reviewer"))]
        for user in users:
            referenced = user.block_document_references["credentials"]["block_document"]
            assert (str(referenced["id"]), referenced["name"], referenced["is_anonymous"]) == (
                str(credentials.id), "nvidia", False)
        client.update_block_document(credentials.id, BlockDocumentUpdate(data={**credentials.data,
                                                                               "api_key": rotated}))
        seen = [client.read_block_document_by_name(u.name, u.block_type.slug, include_secrets=True) for u in users]
    assert all(rotated in str(document.data) and SENTINEL_KEY not in str(document.data) for document in seen)
    # put the session's key back, through setup, which sees the one difference
    run = prefect_server.run(str(Path(sys.executable).parent / "imagegen"), "setup", NVIDIA_API_KEY=SENTINEL_KEY)
    assert run.returncode == 0, run.stdout + run.stderr
    report = lines(run.stdout)
    assert report["updated"] == {"block imagegen-nvidia-credentials/nvidia"}


def test_a_changed_environment_updates_only_what_changed(prefect_server, setup_runs):
    imagegen = str(Path(sys.executable).parent / "imagegen")
    before = {k: v for k, v in setup_runs.state_after_second["limits"].items()}
    run = prefect_server.run(imagegen, "setup", NVIDIA_API_KEY=SENTINEL_KEY, IMAGEGEN_NVIDIA_RATE_PER_MINUTE="20")
    assert run.returncode == 0, run.stdout + run.stderr
    report = lines(run.stdout)
    assert "concurrency limit imagegen-nvidia-rate (20/min)" in report["updated"]
    assert "block imagegen-nvidia-image-provider/nvidia" in report["updated"]
    assert "concurrency limit imagegen-neuroflash-rate (30/min)" in report["unchanged"]
    assert "block imagegen-local-provider/local" in report["unchanged"]
    # put it back for the rest of the session
    run = prefect_server.run(imagegen, "setup", NVIDIA_API_KEY=SENTINEL_KEY)
    assert run.returncode == 0 and "updated" in lines(run.stdout)
    with prefect_server.client() as client:
        limit = client.read_global_concurrency_limit_by_name("imagegen-nvidia-rate")
    assert (limit.limit, limit.slot_decay_per_second) == before["imagegen-nvidia-rate"][:2]
