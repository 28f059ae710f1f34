"""Prompt building, the personal-data detector and the guards that run before any spend."""

import re
from pathlib import Path

import pytest

from imagegen.brief import Brand, Brief, Subject
from imagegen.errors import BriefError
from imagegen.guards import MAX_SEED, find_personal_data
from imagegen.models import ProviderCapabilities
from imagegen.presets import DEFAULT_NEGATIVES, DEFAULT_QUALITY_WORDS, lighting_phrase
from imagegen.prompts import (
    PromptRejected,
    PromptSpec,
    build_prompt,
    build_prompt_specs,
    colour_name,
    derived_seed,
    palette_phrase,
    variation_seed,
)

NATIVE = ProviderCapabilities(negative_prompt="native")
FOLD = ProviderCapabilities(negative_prompt="fold")
DROP = ProviderCapabilities(negative_prompt="drop")
BRAND = Brand(name="Bloom", palette=["#FF6B6B", "#4ecdc4", "#ffffff"])


def make_brief(*subjects, campaign="spring-launch"):
    return Brief(campaign=campaign, brand=BRAND, subjects=list(subjects))


def mug(**fields):
    return Subject(**{"subject": "a ceramic coffee mug on an oak table", **fields})


# --- personal data --------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind", [
    ("User John Doe's face at 123 Main St", "street address"),  # the guide's BAD example
    ("42 Baker Street", "street address"),
    ("10 Downing Street at night", "street address"),
    ("123 main st", "street address"),
    ("Hauptstraße 5", "street address"),
    ("Berliner Str. 12", "street address"),
    ("Kaiser-Wilhelm-Straße 3a", "street address"),
    ("shop on Kurfürstendamm 21", "street address"),
    ("write to jane.doe@example.com", "email address"),
    ("call +49 30 1234567", "phone number"),
    ("call +1 (555) 123-4567", "phone number"),
    ("0049 30 1234567", "phone number"),
    ("030 1234567", "phone number"),
    ("0171-1234567", "phone number"),
    ("(555) 123-4567", "phone number"),
    ("555.123.4567", "phone number"),
    ("card 4111 1111 1111 1111", "payment card number"),
    ("4111-1111-1111-1111", "payment card number"),
    ("5500005555555559", "payment card number"),
    ("IBAN DE89 3704 0044 0532 0130 00", "IBAN"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN"),
    ("DE89370400440532013000", "IBAN"),
])
def test_personal_data_is_found(text, kind):
    assert find_personal_data(text) == [kind]


@pytest.mark.parametrize("text", [
    "Professional headshot, business casual",  # the guide's GOOD example
    "instagram portrait 1080x1350, 1920x1080 and 1080x1920",
    "8K, photorealistic", "4K, professional", "4K Ultra HD",
    "brand colours #ff6b6b, #123456 and #abcdef",
    "spring 2024", "heritage since 1999-2024", "launch on 2026-02-19", "19.02.2026",
    "16:9 banner", "85mm f/1.4, ISO 100, 1/125 s", "shot on 35mm film", "1.618 golden spiral", "3x3 grid",
    "100% cotton", "$1,299 price tag", "24/7 service", "100 000 000 views", "model 3000 series",
    "2024 - 2025 collection", "0.5 opacity", "Route 66 diner", "1st Place trophy",
    "a 4 lane road", "3 people walking down the street", "a 2 way street", "a 2 Tone place",
    "Main Street at dusk", "a wedding ring 2 carat", "Wedding Ring 2", "gold earring 2",
    "card 4111 1111 1111 1112",            # fails the Luhn check
    "DE88 3704 0044 0532 0130 00",         # fails the mod-97 check
    "serial 1234567", "seed 1234567890", "opacity steps 0.5 0.75 0.9",
])
def test_ordinary_prompt_text_is_not_personal_data(text):
    assert find_personal_data(text) == []


def test_several_kinds_are_reported_in_a_fixed_order():
    text = "IBAN DE89 3704 0044 0532 0130 00, 4111 1111 1111 1111, 42 Baker Street, +49 30 1234567, a@b.de"
    assert find_personal_data(text) == ["email address", "phone number", "street address",
                                        "payment card number", "IBAN"]


# --- presets and colour words ---------------------------------------------------------------

def test_lighting_phrase_names_each_light():
    assert lighting_phrase("product") == (
        "softbox left key light, reflector right fill, strip light back light, low ambient light")
    assert lighting_phrase("moody") == "single hard light key light, dark ambient light"  # "none" lights omitted


@pytest.mark.parametrize("hex_colour, name", [
    ("#ff6b6b", "coral red"), ("#4ecdc4", "turquoise"), ("#ffe66d", "yellow"), ("#2c3e50", "midnight blue"),
    ("#ffffff", "white"), ("#000000", "black"), ("#1f5fd6", "blue"),
])
def test_colour_names(hex_colour, name):
    assert colour_name(hex_colour) == name


def test_palette_phrase_names_colours_once_and_never_hex():
    assert palette_phrase(["#ff6b6b", "#ff6a6a", "#4ecdc4", "#ffffff"]) == (
        "color palette of coral red, turquoise and white")
    assert palette_phrase(["#ff6b6b"]) == "color palette of coral red"


# --- build_prompt ---------------------------------------------------------------------------

def test_prompt_follows_the_guide_order():
    subject = mug(style="product", lighting="product", composition="centered", mood="fresh spring morning")
    prompt = build_prompt(subject, BRAND, NATIVE).prompt
    parts = ["a ceramic coffee mug on an oak table", "e-commerce", "softbox left key light", "centered composition",
             "fresh spring morning", "color palette of coral red, turquoise and white", "high detail"]
    positions = [prompt.index(part) for part in parts]
    assert positions == sorted(positions)
    assert prompt.startswith(parts[0] + ", ")
    assert prompt.endswith(", ".join(DEFAULT_QUALITY_WORDS[1:]))


def test_prompt_is_clean_comma_separated_text_without_hex_codes():
    subject = mug(subject="  a mug ,,  on   a table. ", mood="calm,  airy")
    prompt = build_prompt(subject, BRAND, NATIVE).prompt
    assert "  " not in prompt and ",," not in prompt and ", ," not in prompt and " ," not in prompt
    assert "#" not in prompt
    assert prompt.startswith("a mug, on a table, ")
    assert prompt.count("professional") == 1  # in the product style and the default quality words


def test_negatives_native():
    built = build_prompt(mug(), BRAND, NATIVE)
    assert built.negatives_handling == "native"
    assert built.negative_prompt == ", ".join(DEFAULT_NEGATIVES)
    assert "avoid" not in built.prompt


def test_negatives_folded_into_the_prompt():
    built = build_prompt(mug(negatives=["blurry", "low quality"]), BRAND, FOLD)
    assert built.negatives_handling == "folded"
    assert built.negative_prompt == ""
    assert built.prompt.endswith(", avoid: blurry, low quality")


def test_negatives_dropped():
    built = build_prompt(mug(), BRAND, DROP)
    assert (built.negative_prompt, built.negatives_handling) == ("", "dropped")
    assert "blurry" not in built.prompt


def test_quality_words_replace_the_defaults_and_an_empty_list_means_none():
    assert build_prompt(mug(quality=["8K"]), BRAND, NATIVE).prompt.endswith("white, 8K")
    prompt = build_prompt(mug(style="vintage", quality=[]), BRAND, NATIVE).prompt
    assert not any(word in prompt for word in DEFAULT_QUALITY_WORDS)


# --- build_prompt_specs ---------------------------------------------------------------------

def test_one_spec_per_subject_and_variation():
    brief = make_brief(mug(), mug(subject="a teapot", variations=3))
    specs = build_prompt_specs(brief, FOLD, "local", "local-v1", 1024, 768)
    assert [(s.subject_index, s.variation) for s in specs] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    spec = specs[1]
    assert (spec.campaign, spec.provider, spec.model, spec.width, spec.height) == (
        "spring-launch", "local", "local-v1", 1024, 768)
    assert spec.palette == ["#ff6b6b", "#4ecdc4", "#ffffff"] and spec.brand_name == "Bloom"
    assert spec.quality == DEFAULT_QUALITY_WORDS
    assert spec.render_spec() == {"subject": "a teapot", "palette": spec.palette, "style": "product",
                                  "lighting": "product", "composition": "rule_of_thirds", "mood": ""}


def test_explicit_seed_counts_up_per_variation():
    specs = build_prompt_specs(make_brief(mug(seed=1000, variations=3)), FOLD, "local", None, 512, 512)
    assert [s.seed for s in specs] == [1000, 1001, 1002]


def test_derived_seeds_are_stable_in_range_and_differ_per_subject():
    brief = make_brief(mug(variations=2), mug(subject="a teapot"))
    first = [s.seed for s in build_prompt_specs(brief, FOLD, "local", None, 512, 512)]
    again = [s.seed for s in build_prompt_specs(brief, FOLD, "local", None, 512, 512)]
    assert first == again
    assert first[1] == variation_seed(first[0], 1) and first[0] != first[2]
    assert first[0] == derived_seed("spring-launch", 0)
    assert all(1 <= seed <= MAX_SEED for seed in first)


def test_variation_seed_wraps_inside_the_range():
    assert variation_seed(MAX_SEED, 1) == 1
    assert variation_seed(MAX_SEED - 1, 1) == MAX_SEED


def test_over_long_prompt_is_rejected_before_any_spend():
    long_subject = mug(subject="a " + "very " * 36 + "long subject", mood="m" * 120)
    brief = make_brief(mug(), long_subject, long_subject)
    with pytest.raises(PromptRejected) as info:
        build_prompt_specs(brief, FOLD, "local", None, 512, 512)
    assert isinstance(info.value, BriefError)
    locs = [loc for loc, _ in info.value.problems]
    assert locs == ["subjects[1]", "subjects[2]"]  # every problem, not just the first
    reason = info.value.problems[0][1]
    assert re.fullmatch(r"prompt is \d+ characters; the provider accepts at most 500 "
                        r"\(shorten subject/featuring/mood/quality\)", reason)
    assert int(reason.split()[2]) > 500


def test_length_limit_comes_from_the_provider_capabilities():
    caps = ProviderCapabilities(max_prompt_chars=100, negative_prompt="native")
    with pytest.raises(PromptRejected, match="the provider accepts at most 100"):
        build_prompt_specs(make_brief(mug()), caps, "nvidia", None, 1024, 1024)


def test_personal_data_in_the_final_prompt_is_rejected():
    # Brief validation catches this too; model_construct skips it to test the last line of defence.
    leaky = Subject.model_construct(**{**mug().model_dump(), "mood": "ask jane@example.com"})
    brief = make_brief(mug(), mug()).model_copy(update={"subjects": [mug(), leaky]})
    with pytest.raises(PromptRejected) as info:
        build_prompt_specs(brief, NATIVE, "local", None, 512, 512)
    assert info.value.problems == [("subjects[1]", "prompt contains personal data (email address)")]
    assert "jane@" not in str(info.value)


# --- cache key and asset id -----------------------------------------------------------------

def one_spec(brief=None, **kwargs) -> PromptSpec:
    args = {"caps": NATIVE, "provider": "local", "model": "local-v1", "width": 1024, "height": 1024, **kwargs}
    return build_prompt_specs(brief or make_brief(mug(seed=7)), **args)[0]


def test_cache_key_is_stable():
    assert one_spec().cache_key() == one_spec().cache_key()
    assert re.fullmatch(r"[0-9a-f]{64}", one_spec().cache_key())


@pytest.mark.parametrize("change", [
    {"seed": 8}, {"prompt": "something else"}, {"width": 1080}, {"height": 1350}, {"provider": "nvidia"},
    {"model": "flux.1-dev"}, {"negative_prompt": ""}, {"negatives_handling": "folded"}, {"palette": ["#000000"]},
    {"mood": "dark"}, {"style": "vintage"},
])
def test_cache_key_changes_with_what_changes_pixels(change):
    spec = one_spec()
    assert spec.model_copy(update=change).cache_key() != spec.cache_key()


def test_cache_key_ignores_campaign_and_naming():
    spec = one_spec()
    renamed = spec.model_copy(update={"campaign": "other", "asset_id": "x", "brand_name": "Other",
                                      "subject_index": 5, "variation": 3})
    assert renamed.cache_key() == spec.cache_key()
    # The same subject and seed in another campaign is the same image: the provider is not asked twice.
    other = one_spec(make_brief(mug(seed=7), campaign="summer-sale"))
    assert (other.cache_key(), other.asset_id) == (spec.cache_key(), spec.asset_id)


def test_asset_id_format_and_determinism():
    brief = make_brief(mug(subject="Ein Café-Crème in der Frühlingssonne, auf einem Eichentisch", variations=2))
    specs = build_prompt_specs(brief, FOLD, "local", None, 1024, 1024)
    again = build_prompt_specs(brief, FOLD, "local", None, 1024, 1024)
    assert [s.asset_id for s in specs] == [s.asset_id for s in again]
    first = specs[0].asset_id
    assert re.fullmatch(r"[a-z0-9-]+-v01-[0-9a-f]{8}", first)
    assert first == f"ein-cafe-creme-in-der-fruhlingssonne-auf-v01-{specs[0].cache_key()[:8]}"
    assert specs[1].asset_id.split("-v02-")[0] == first.split("-v01-")[0]
    assert len(first.split("-v01-")[0]) <= 40


def test_asset_id_falls_back_when_the_subject_has_no_ascii():
    spec = one_spec(make_brief(mug(subject="日本茶", seed=7)))
    assert re.fullmatch(r"subject-1-v01-[0-9a-f]{8}", spec.asset_id)


# --- multi-subject generation (seed 000: "featuring: name: description, ...") ----------------------

DUO = [{"name": "Max", "description": "a golden retriever with a red collar"},
       {"name": "Lea", "description": "a girl in a yellow raincoat"}]


def test_featured_subjects_follow_the_subject_as_the_seed_writes_them():
    built = build_prompt(mug(subject="a walk in an autumn park", featuring=DUO), BRAND, NATIVE)
    assert built.prompt.startswith("a walk in an autumn park, featuring: Max: a golden retriever with a red "
                                   "collar, Lea: a girl in a yellow raincoat, ")
    assert build_prompt(mug(), BRAND, NATIVE).prompt.count("featuring") == 0


def test_featured_subjects_keep_variations_and_change_the_cache_key():
    plain, duo = (build_prompt_specs(make_brief(mug(featuring=f, variations=2)), FOLD, "local", None, 512, 512)
                  for f in ([], DUO))
    assert [s.seed for s in duo] == [s.seed for s in plain] and duo[0].seed != duo[1].seed
    assert all("featuring: Max: " in s.prompt for s in duo)
    assert {s.cache_key() for s in duo}.isdisjoint({s.cache_key() for s in plain})


def test_featured_subjects_count_against_the_prompt_length_guard():
    many = [{"name": f"Pet{i}", "description": "a very fluffy small dog " * 5} for i in range(5)]
    with pytest.raises(PromptRejected) as info:
        build_prompt_specs(make_brief(mug(featuring=many)), FOLD, "local", None, 512, 512)
    assert info.value.problems[0][0] == "subjects[0]"
    assert "shorten subject/featuring/mood/quality" in info.value.problems[0][1]


@pytest.mark.parametrize("featuring, where, reason", [
    ([{"name": "", "description": "a dog"}], "subjects[0].featuring[0].name", "must not be empty"),
    ([{"name": "Max"}], "subjects[0].featuring[0].description", "required"),
    ([{"name": "Max", "description": "a dog"}, {"name": "max", "description": "a cat"}],
     "subjects[0].featuring", "'max' is featured twice"),
    ([{"name": "Max", "description": "call +49 30 1234567"}], "subjects[0].featuring[0].description",
     "personal data"),
    ([{"name": "Max", "description": "a dog", "age": 3}], "subjects[0].featuring[0].age", ""),
])
def test_bad_featured_subjects_name_the_field(featuring, where, reason):
    from imagegen.brief_source import parse_brief

    data = {"campaign": "c", "brand": {"name": "B", "palette": ["#112233"]}, "subjects": [{"subject": "a park", "featuring": featuring}]}
    with pytest.raises(BriefError) as info:
        parse_brief(data, Path("."))
    problems = dict(info.value.problems)
    assert where in problems and reason in problems[where], problems


# --- thumbnail-only plans (seed 000 "COST OPTIMIZATION": fewer steps for thumbnails) ------------------------

def test_a_plan_whose_targets_are_all_thumbnails_asks_the_model_for_its_fewer_steps():
    from imagegen.planning import plan_masters
    from imagegen.providers.nvidia_models import FLUX_DEV, FLUX_SCHNELL, model_capabilities
    from imagegen.sizes import Target

    thumbnails = Brief(campaign="thumbs", brand=BRAND, subjects=[mug()], size_sets=[],
                       targets=[Target(name="thumb", platform="web", width=320, height=320),
                                Target(name="card", platform="web", width=512, height=384)])
    flux = model_capabilities(FLUX_DEV)
    specs, _ = plan_masters(thumbnails, flux, "nvidia", FLUX_DEV, 2048)
    assert [s.steps for s in specs] == [20]  # FLUX.1-dev: 20 instead of its default 50
    full, _ = plan_masters(make_brief(mug(), campaign="thumbs"), flux, "nvidia", FLUX_DEV, 2048)  # social: large
    assert [s.steps for s in full] == [None]
    assert specs[0].cache_key() != full[0].cache_key(), "other pixels: another ledger entry"
    assert specs[0].asset_id == full[0].asset_id, "the asset keeps its name"
    schnell, _ = plan_masters(thumbnails, model_capabilities(FLUX_SCHNELL), "nvidia", FLUX_SCHNELL, 2048)
    local, _ = plan_masters(thumbnails, ProviderCapabilities(), "local", "local", 2048)
    assert [s.steps for s in schnell + local] == [None, None], "no faster setting: the model's own"
