"""Saved blocks named in a brief: the README's slugs exist, and a wrong name gets a message that lists
what would fit (the saved blocks and the block types), so the fix is one look away."""

import re
from pathlib import Path

import pytest
import yaml

from imagegen.errors import BriefError
from imagegen_flows.blocks.providers import ImageProviderBlock, LocalProvider
from imagegen_flows.blocks.resolve import load_saved_block
from imagegen_flows.deployments.setup import block_types

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_block_slug_in_the_readme_is_a_block_type_we_register():
    """Every `imagegen-<type>/<name>` the README names is a block type of ours, except the deployments
    (`<flow>/<deployment>`, from prefect.yaml) and the default output folder's paths."""
    deployments = {f"{flow}/{d['name']}" for d in yaml.safe_load((README.parent / "prefect.yaml").read_text())[
        "deployments"] for flow in ("imagegen-campaign", "imagegen-size-set")}
    named = set(re.findall(r"[`{: ](imagegen-[a-z-]+/[A-Za-z0-9_-]+)", README.read_text())) - deployments
    named = {n for n in named if not n.startswith("imagegen-output/")}
    assert len(named) >= 5, "the README names fewer saved blocks than it should: this test would check little"
    ours = {block_type.get_block_type_slug() for block_type in block_types()}
    assert {slug for slug in (n.split("/")[0] for n in named) if slug not in ours} == set()


@pytest.mark.prefect
def test_a_wrong_block_slug_lists_the_saved_blocks_and_types_that_would_fit(prefect_harness):
    LocalProvider(master_size=256).save("studio-lights", overwrite=True)
    with pytest.raises(BriefError) as caught:
        load_saved_block("imagegen-nvidia-provider/prod", "provider.block", ImageProviderBlock)
    message = str(caught.value)
    assert "provider.block: no saved block 'imagegen-nvidia-provider/prod' on the Prefect API" in message
    assert "saved: imagegen-local-provider/studio-lights" in message
    types = message.split("block types: ", 1)[1]
    assert "imagegen-nvidia-image-provider" in types and "imagegen-neuroflash-provider" in types
    assert "imagegen-nvidia-vision-reviewer" not in types  # a reviewer is not a provider


@pytest.mark.prefect
def test_a_block_of_the_wrong_kind_says_what_it_is_and_what_fits(prefect_harness):
    LocalProvider(master_size=256).save("not-a-store", overwrite=True)
    from imagegen_flows.blocks.storage import AssetStoreBlock

    with pytest.raises(BriefError, match="is a LocalProvider, not a AssetStoreBlock; saved: .*block types: .*"
                                         "imagegen-local-asset-folder"):
        load_saved_block("imagegen-local-provider/not-a-store", "publish.small_store", AssetStoreBlock)
