"""Rendering on a Dask cluster: which scheduler a size-set run uses, what travels to a worker, and the
error a worker gives when it does not share the flow's paths (no Prefect server, no cluster)."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import cloudpickle
import pytest
from PIL import Image

from imagegen.errors import RenderInputUnreadable
from imagegen.models import GeneratedImage, ImageRef
from imagegen.publishing import check_render_inputs, render_master_set
from imagegen.settings import load_settings
from imagegen.sizes import resolve_targets
from imagegen_flows.flows.render_cluster import dask_address_of
from imagegen_flows.tasks.publish import render_master


@pytest.mark.parametrize("parameter, variable, expected", [
    (None, None, (None, "IMAGEGEN_DASK_ADDRESS")),
    ("", "  ", (None, "IMAGEGEN_DASK_ADDRESS")),
    (None, "tcp://10.0.0.5:8786", ("tcp://10.0.0.5:8786", "IMAGEGEN_DASK_ADDRESS")),
    (" tcp://10.0.0.7:8786 ", "tcp://10.0.0.5:8786", ("tcp://10.0.0.7:8786", "dask_address")),  # the run's own wins
    ("tcp://10.0.0.7:8786", None, ("tcp://10.0.0.7:8786", "dask_address")),
])
def test_the_parameter_names_the_scheduler_before_the_environment(monkeypatch, parameter, variable, expected):
    if variable is None:
        monkeypatch.delenv("IMAGEGEN_DASK_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("IMAGEGEN_DASK_ADDRESS", variable)
    assert dask_address_of(parameter, load_settings()) == expected


def master_at(path: Path) -> GeneratedImage:
    return GeneratedImage(image=ImageRef(path=str(path), sha256="ab" * 32, width=512, height=512, format="PNG",
                                         bytes=1000), provider="local", model="local-render", seed=7,
                          generation_ms=1)


def test_an_unreadable_master_is_named_with_the_machine_and_the_remedy(tmp_path):
    missing = tmp_path / "masters" / "gone.png"
    with pytest.raises(RenderInputUnreadable) as caught:
        render_master_set(master_at(missing), campaign="c", asset_id="a", prompt="p",
                          targets=resolve_targets(["pinterest"], []), work_dir=tmp_path / "work")
    message = str(caught.value)
    assert message.startswith(f"cannot read the master {missing} on {socket.gethostname()}: ")
    assert "each Dask worker" in message and "at the same paths" in message
    assert not (tmp_path / "work").exists()  # it failed before any pixel work


def test_every_unreadable_input_is_named_and_readable_ones_are_not(tmp_path):
    master = tmp_path / "m.png"
    Image.new("RGB", (8, 8)).save(master)
    check_render_inputs({"the master": str(master), "the logo": None})  # readable, and no logo: no error
    with pytest.raises(RenderInputUnreadable) as caught:
        check_render_inputs({"the master": str(master), "the logo": str(tmp_path / "logo.png"),
                             "the signing key": str(tmp_path)})  # a folder is not a readable file
    message = str(caught.value)
    assert f"the logo {tmp_path / 'logo.png'}, the signing key {tmp_path} on " in message
    assert "the master" not in message


def test_what_travels_to_a_worker_is_small(tmp_path):
    """The render task pickles (Dask ships it by value: its module attribute is the Task) without the
    process's pixel slots, and its arguments are file references: a few KB, whatever the master's size."""
    assert pickle.loads(cloudpickle.dumps(render_master)).name == "render-master"
    master = master_at(tmp_path / "m.png").model_copy(update={"image": ImageRef(
        path=str(tmp_path / "m.png"), sha256="ab" * 32, width=8192, height=8192, format="PNG", bytes=150_000_000)})
    arguments = {"master": master, "campaign": "c", "asset_id": "a", "prompt": "p" * 500,
                 "targets": resolve_targets(["social"], []), "work_dir": str(tmp_path)}
    assert len(cloudpickle.dumps(arguments)) < 20_000
