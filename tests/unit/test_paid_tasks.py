"""The paid tasks (`.fn`, no Prefect run): generate, regenerate, provider edit, outpaint and VLM review each
pay once for what decides their result and take it from the ledger afterwards, in any later run; what
changes the result (seed, source bytes, instruction, model, prompt version) pays again."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from imagegen.brief import Brand, Brief, Subject
from imagegen.budget import budget_for_run, release_run
from imagegen.errors import MasterChanged
from imagegen.ledger import file_state
from imagegen.models import GeneratedImage, ProviderCapabilities
from imagegen.prompts import build_prompt_specs
from imagegen.providers.base import save_image_bytes
from imagegen.providers.vlm import Review
from imagegen_flows.tasks import providers as provider_tasks
from imagegen_flows.tasks.generate import (
    adopt_into,
    generate_master,
    outpaint_master,
    provider_edit_master,
    regenerate_master,
)
from imagegen_flows.tasks.providers import review_master


def picture(*parts: object, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small PNG that is a deterministic function of `parts`."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    buffer = io.BytesIO()
    Image.new("RGB", size, tuple(digest[:3])).save(buffer, "PNG")
    return buffer.getvalue()


class CountingGenerator:
    name = "fake"

    def __init__(self, calls: list[tuple]):
        self.calls = calls

    def generate(self, request, dest_dir: Path) -> GeneratedImage:
        self.calls.append(("generate", request.seed))
        ref = save_image_bytes(picture(request.prompt, request.seed), dest_dir, provider=self.name)
        return GeneratedImage(image=ref, provider=self.name, model="gen-1", seed=request.seed, generation_ms=1)

    def edit(self, source, instruction, request, dest_dir: Path) -> GeneratedImage:
        self.calls.append(("edit", source.sha256, instruction))
        ref = save_image_bytes(picture(source.sha256, instruction), dest_dir, provider=self.name)
        return GeneratedImage(image=ref, provider=self.name, model="edit-1", seed=request.seed, generation_ms=1)


class FakeProvider:
    """What the tasks use of a provider block."""

    provider_name = "fake"
    edit_model = "edit-1"

    def __init__(self):
        self.calls: list[tuple] = []

    def get_generator(self) -> CountingGenerator:
        return CountingGenerator(self.calls)


class FakeReviewer:
    def __init__(self, model: str = "vlm-1"):
        self.model = model
        self.calls: list[str] = []

    def get_reviewer(self):
        return self

    def review(self, image_path, context, journal=None) -> Review:
        self.calls.append(str(image_path))
        return Review(verdict="fail", reasons=["the handle is missing"], alt_text="A mug", model=self.model)


@pytest.fixture
def run_id():
    run = f"test-{uuid.uuid4()}"
    budget_for_run(run)
    yield run
    release_run(run)


@pytest.fixture
def spec():
    brief = Brief(campaign="paid", brand=Brand(name="Acme", palette=["#ff6b6b"]),
                  subjects=[Subject(subject="a ceramic mug", seed=11)])
    caps = ProviderCapabilities(aspect_ratios=["1:1", "16:9"], supports_edit=True)
    return build_prompt_specs(brief, caps, "fake", "gen-1", 64, 64)[0]


def test_generation_is_paid_once_across_runs(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    first = generate_master.fn(spec, provider, masters, run_id)
    again = generate_master.fn(spec, provider, masters, "another-run")
    assert again == first and provider.calls == [("generate", spec.seed)]
    assert budget_for_run(run_id).spent == 1 and budget_for_run("another-run").spent == 0
    release_run("another-run")


def test_regeneration_is_paid_once_per_attempt_seed(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    first = regenerate_master.fn(spec, provider, masters, run_id, 1)
    assert regenerate_master.fn(spec, provider, masters, run_id, 1) == first
    assert len(provider.calls) == 1 and first.metadata["regenerated"] == 1 and first.seed != spec.seed
    second = regenerate_master.fn(spec, provider, masters, run_id, 2)  # another attempt, another seed
    assert len(provider.calls) == 2 and second.seed != first.seed
    other_prompt = spec.model_copy(update={"prompt": spec.prompt + ", at dawn"})
    regenerate_master.fn(other_prompt, provider, masters, run_id, 1)
    assert len(provider.calls) == 3 and budget_for_run(run_id).spent == 3


def test_provider_edit_is_paid_once_per_source_instruction_and_model(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    source = generate_master.fn(spec, provider, masters, run_id)
    fix = "Improve this image. Fix: the handle is missing"
    edited = provider_edit_master.fn(source, spec, provider, fix, masters, run_id, 1)
    assert provider_edit_master.fn(source, spec, provider, fix, masters, run_id, 1) == edited
    assert provider.calls[1:] == [("edit", source.image.sha256, fix)]
    assert edited.metadata["edits"][-1] == {"attempt": 1, "kind": "provider_edit", "instruction": fix}
    provider_edit_master.fn(source, spec, provider, fix + "; too dark", masters, run_id, 1)
    provider_edit_master.fn(edited, spec, provider, fix, masters, run_id, 2)  # other source bytes
    other_model = FakeProvider()
    other_model.edit_model, other_model.calls = "edit-2", provider.calls
    provider_edit_master.fn(source, spec, other_model, fix, masters, run_id, 1)
    assert len(provider.calls) == 5


def test_outpaint_is_paid_once_per_base_and_ratio(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    base = generate_master.fn(spec, provider, masters, run_id)
    wide = spec.model_copy(update={"asset_id": spec.asset_id + "-16x9", "outpaint_from": spec.asset_id,
                                   "outpaint_ratio": "16:9"})
    first = outpaint_master.fn(base, wide, provider, masters, run_id)
    assert outpaint_master.fn(base, wide, provider, masters, "another-run") == first
    assert [c[0] for c in provider.calls] == ["generate", "edit"] and first.metadata["outpainted_from"] == spec.asset_id
    release_run("another-run")


def test_review_is_paid_once_per_bytes_model_prompt_version_and_context(tmp_path, spec, run_id, monkeypatch):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    image = generate_master.fn(spec, provider, masters, run_id).image
    reviewer, context = FakeReviewer(), {"campaign": "paid", "prompt": spec.prompt, "brand": "Acme"}
    first = review_master.fn(image.path, spec.asset_id, reviewer, context, run_id, image.sha256, masters)
    again = review_master.fn(image.path, spec.asset_id, reviewer, dict(reversed(context.items())), run_id,
                             image.sha256, masters)
    assert isinstance(again, Review) and again == first and len(reviewer.calls) == 1
    other_model = FakeReviewer("vlm-2")
    review_master.fn(image.path, spec.asset_id, other_model, context, run_id, image.sha256, masters)
    review_master.fn(image.path, spec.asset_id, reviewer, {**context, "campaign": "other"}, run_id, image.sha256,
                     masters)
    monkeypatch.setattr(provider_tasks, "REVIEW_PROMPT_VERSION", provider_tasks.REVIEW_PROMPT_VERSION + 1)
    review_master.fn(image.path, spec.asset_id, reviewer, context, run_id, image.sha256, masters)
    assert (len(reviewer.calls), len(other_model.calls)) == (3, 1)
    assert budget_for_run(run_id).spent == 1 + 4  # the generation and 4 reviews


def test_a_truncated_regenerated_master_is_reported_not_regenerated(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    made = regenerate_master.fn(spec, provider, masters, run_id, 1)
    Path(made.image.path).write_bytes(Path(made.image.path).read_bytes()[:50])
    with pytest.raises(MasterChanged, match=rf"masters/{made.image.sha256}\.png: bytes differ from the ledger's "
                                            rf"sha256 {made.image.sha256[:12]}; restore the file or delete the "
                                            r"ledger entry .*\.ledger/[0-9a-f]{64}\.json to pay for a new one"):
        regenerate_master.fn(spec, provider, masters, run_id, 1)
    assert len(provider.calls) == 1


def test_a_cached_master_from_another_folder_is_adopted_only_with_its_recorded_bytes(tmp_path, spec, run_id):
    """Prefect's cache may hand back a master another output folder made: it is copied in intact, a
    changed copy already here is replaced by it, and a changed source is never copied."""
    made = generate_master.fn(spec, FakeProvider(), str(tmp_path / "elsewhere"), run_id)
    here = tmp_path / "out" / "masters"
    adopted = adopt_into(made, here)
    assert Path(adopted.image.path).parent == here.resolve() and file_state(adopted.image) == "intact"
    Path(adopted.image.path).write_bytes(b"truncated")
    assert adopt_into(made, here) == adopted and file_state(adopted.image) == "intact"
    Path(made.image.path).write_bytes(b"truncated")
    with pytest.raises(MasterChanged, match="bytes differ from the recorded sha256"):
        adopt_into(made, tmp_path / "third" / "masters")
    assert not (tmp_path / "third" / "masters" / Path(made.image.path).name).exists()
