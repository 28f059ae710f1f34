"""Runs that never pass through the CLI (a deployment, a schedule, an event) check their output folder,
catalog and VLM credentials in the flow itself, before any provider call: one SettingsError naming the
parameter or variable, nothing paid, nothing written."""

from __future__ import annotations

import pytest

from imagegen.errors import SettingsError
from imagegen_flows.flows.campaign import campaign_flow
from tests.faults.conftest import write_brief

pytestmark = pytest.mark.prefect


def test_flow_refuses_an_output_folder_that_is_a_file(tmp_path, nvidia):
    brief = write_brief(tmp_path, "flow-out-file", provider={"name": "nvidia", "model": "black-forest-labs/flux.1-dev"})
    out = tmp_path / "not-a-folder"
    out.write_text("a file where the output folder should be")
    with pytest.raises(SettingsError, match=r"^out_dir: "):
        campaign_flow(brief=str(brief), out_dir=str(out))
    assert nvidia.spent == 0
    assert out.read_text() == "a file where the output folder should be"


def test_flow_refuses_an_unusable_catalog_before_spending(tmp_path, nvidia, monkeypatch):
    brief = write_brief(tmp_path, "flow-bad-catalog", provider={"name": "nvidia", "model": "black-forest-labs/flux.1-dev"})
    catalog_dir = tmp_path / "catalog-is-a-folder.db"
    catalog_dir.mkdir()
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", f"sqlite:///{catalog_dir}")
    with pytest.raises(SettingsError, match=r"^IMAGEGEN_CATALOG_URL: the catalog cannot be used"):
        campaign_flow(brief=str(brief), out_dir=str(tmp_path / "out"))
    assert nvidia.spent == 0
    assert not (tmp_path / "out").exists()


def test_vlm_review_without_a_key_is_the_environment_not_the_brief(tmp_path, monkeypatch):
    brief = write_brief(tmp_path, "flow-vlm-no-key", provider={"name": "local"}, quality={"vlm_review": True})
    monkeypatch.delenv("NVIDIA_API_KEY", raising=False)
    monkeypatch.delenv("IMAGEGEN_NVIDIA_API_KEY", raising=False)
    with pytest.raises(SettingsError, match=r"^NVIDIA_API_KEY: the brief's quality.vlm_review needs a reviewer"):
        campaign_flow(brief=str(brief), out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out" / "masters").exists()
