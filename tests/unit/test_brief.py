"""Loading briefs: the examples, and a clear (field path, reason) for every kind of mistake."""

import copy
import json
import math
import os
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from imagegen.brief import Brief
from imagegen.brief_source import load_brief, parse_brief
from imagegen.errors import BriefError
from imagegen.models import ProviderCapabilities
from imagegen.prompts import build_prompt_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

VALID = {
    "campaign": "spring-launch",
    "brand": {"name": "Bloom", "palette": ["#FF6B6B", "#4ecdc4"]},
    "subjects": [{"subject": "a ceramic coffee mug"}, {"subject": "a teapot", "style": "vintage"}],
}


def problems_for(mutate, base_dir: Path = EXAMPLES) -> list[tuple[str, str]]:
    data = copy.deepcopy(VALID)
    mutate(data)
    with pytest.raises(BriefError) as info:
        parse_brief(data, base_dir)
    return info.value.problems


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the examples ---------------------------------------------------------------------------

def test_spring_launch_example_loads():
    brief = load_brief(EXAMPLES / "spring-launch.yaml")
    assert brief.campaign == "spring-launch"
    assert brief.brand.palette == ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50", "#ffffff"]
    assert [(s.style, s.lighting, s.composition) for s in brief.subjects] == [
        ("product", "product", "rule_of_thirds"),
        ("lifestyle", "golden_hour", "leading_lines"),
        ("minimalist", "studio_high_key", "centered"),
    ]
    assert [s.variations for s in brief.subjects] == [1, 2, 1]
    assert brief.size_sets == ["instagram", "facebook", "x", "linkedin"]
    assert brief.provider.name == "local"
    assert brief.logo_path == (EXAMPLES / "logo.png").resolve()
    assert brief.logo_path.is_absolute()


def test_product_hero_example_loads_with_its_explicit_target():
    brief = load_brief(str(EXAMPLES / "product-hero.json"))
    names = [t.name for t in brief.all_targets]
    assert names == ["pinterest_pin", "youtube_thumbnail", "web_hero"]
    hero = brief.all_targets[-1]
    assert (hero.platform, hero.width, hero.height, hero.format, hero.max_bytes) == ("web", 1920, 600, "WEBP", 500_000)
    assert brief.logo_path is None


@pytest.mark.parametrize("name", ["spring-launch.yaml", "product-hero.json"])
@pytest.mark.parametrize("caps", [ProviderCapabilities(negative_prompt="fold"),
                                  ProviderCapabilities(negative_prompt="native")])
def test_example_prompts_fit_in_500_characters(name, caps):
    specs = build_prompt_specs(load_brief(EXAMPLES / name), caps, "local", None, 1024, 1024)
    assert specs and all(len(spec.prompt) < 500 for spec in specs)


def test_defaults():
    brief = parse_brief(copy.deepcopy(VALID), EXAMPLES)
    assert brief.size_sets == ["social"] and len(brief.all_targets) == 9
    assert brief.provider.name == "local" and brief.provider.block is None
    assert brief.quality.min_width == 1024 and brief.quality.allowed_formats == ["PNG", "JPEG", "WEBP"]
    assert brief.publish.size_threshold_bytes == 2_000_000 and brief.publish.include_master
    subject = brief.subjects[0]
    assert (subject.style, subject.lighting, subject.composition, subject.variations, subject.seed) == (
        "product", "product", "rule_of_thirds", 1, None)


def test_brief_survives_a_json_round_trip_and_pickling():
    import pickle

    brief = load_brief(EXAMPLES / "spring-launch.yaml")
    again = Brief.model_validate(json.loads(brief.model_dump_json()))
    assert again == brief and again.logo_path == brief.logo_path
    assert pickle.loads(pickle.dumps(brief)) == brief


# --- shorthands and normalisation -----------------------------------------------------------

def test_hex_colours_are_normalised():
    brief = parse_brief({**VALID, "brand": {"name": "B", "palette": ["#ABC", " #FfEeDd "]}}, EXAMPLES)
    assert brief.brand.palette == ["#aabbcc", "#ffeedd"]


@pytest.mark.parametrize("provider, name, block", [
    ("nvidia", "nvidia", None),
    ("nvidia-provider/prod", None, "nvidia-provider/prod"),
    ({"name": "neuroflash", "fallback": ["local"]}, "neuroflash", None),
    (None, "local", None),
])
def test_provider_shorthands(provider, name, block):
    brief = parse_brief({**VALID, "provider": provider}, EXAMPLES)
    assert (brief.provider.name, brief.provider.block) == (name, block)


def test_preset_names_are_forgiving_about_case_and_separators():
    data = {**VALID, "subjects": [{"subject": "a mug", "style": "Cyberpunk", "composition": "rule of thirds",
                                   "lighting": "golden-hour"}]}
    subject = parse_brief(data, EXAMPLES).subjects[0]
    assert (subject.style, subject.composition, subject.lighting) == ("cyberpunk", "rule_of_thirds", "golden_hour")


# --- bad briefs: exact field path and reason ------------------------------------------------

def set_in(path, value):
    """A mutation setting data[a][b]... = value for path 'a.b'; list indexes as ints."""
    def mutate(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


@pytest.mark.parametrize("mutate, expected", [
    # wrong types
    (set_in(["subjects", 0, "variations"], "many"), ("subjects[0].variations", "expected a whole number, got text")),
    (set_in(["brand"], "acme"), ("brand", "expected a mapping, got text")),
    (set_in(["subjects"], "a mug"), ("subjects", "expected a list, got text")),
    (set_in(["subjects", 0, "subject"], 42), ("subjects[0].subject", "expected text, got a number")),
    # unknown names
    (set_in(["size_sets"], ["instagram", "tiktok"]),
     ("size_sets[1]", "unknown size set 'tiktok'; known: facebook, instagram, linkedin, pinterest, social, "
                      "social_weekly, thumbnails, x, youtube")),
    (set_in(["subjects", 1, "style"], "baroque"),
     ("subjects[1].style", "unknown style 'baroque'; known: cyberpunk, landscape, lifestyle, luxury, minimalist, "
                           "portrait, product, vintage")),
    (set_in(["subjects", 0, "lighting"], "disco"),
     ("subjects[0].lighting", "unknown lighting 'disco'; known: golden_hour, moody, portrait, product, "
                              "studio_high_key")),
    (set_in(["subjects", 0, "composition"], "chaos"),
     ("subjects[0].composition", "unknown composition 'chaos'; known: centered, frame, golden_ratio, leading_lines, "
                                 "rule_of_thirds, symmetry")),
    (set_in(["targets"], [{"name": "hero", "platform": "myspace", "width": 100, "height": 100}]),
     ("targets[0].platform", "unknown platform 'myspace'; known: instagram, facebook, x, linkedin, pinterest, "
                             "youtube, tiktok, web, email, print")),
    (set_in(["targets"], [{"name": "hero", "platform": "web", "width": 100, "height": 100, "format": "GIF"}]),
     ("targets[0].format", "unknown format 'GIF'; use one of PNG, JPEG, WEBP, AVIF")),
    (set_in(["targets"], [{"name": "hero", "platform": "web", "width": 8, "height": 100}]),
     ("targets[0].width", "must be at least 16")),
    (set_in(["provider"], {"name": "dalle"}), ("provider.name", "unknown provider 'dalle'; known: local, nvidia, "
                                                                "nim, neuroflash")),
    (set_in(["provider"], {"name": "nvidia", "block": "nvidia-provider/prod"}),
     ("provider", "give either name or block, not both")),
    (set_in(["quality", ], {"allowed_formats": ["PNG", "BMP"]}),
     ("quality.allowed_formats[1]", "unknown format 'BMP'; use one of PNG, JPEG, WEBP, AVIF")),
    (set_in(["quality"], {"max_edit_attempts": 9}), ("quality.max_edit_attempts", "must be at most 5")),
    # colours
    (set_in(["brand", "palette"], ["#fff", "#ff6b6b", "red"]),
     ("brand.palette[2]", "not a hex colour like #ff6b6b: 'red'")),
    (set_in(["brand", "palette"], ["#ff6b6"]), ("brand.palette[0]", "not a hex colour like #ff6b6b: '#ff6b6'")),
    (set_in(["brand", "palette"], []), ("brand.palette", "needs at least 1 item")),
    # missing things
    (set_in(["subjects"], [{"style": "product"}]), ("subjects[0].subject", "field required")),
    (set_in(["subjects"], []), ("subjects", "needs at least 1 item")),
    (lambda data: data.pop("brand"), ("brand", "field required")),
    (set_in(["subjects", 0, "subject"], ""), ("subjects[0].subject", "must not be empty")),
    (lambda data: data.update(size_sets=[], targets=[]),
     ("targets", "no output sizes: size_sets and targets are both empty")),
    # typos
    (set_in(["subjects", 0, "moood"], "calm"), ("subjects[0].moood", "unknown field; did you mean 'mood'?")),
    (set_in(["sizesets"], ["x"]), ("sizesets", "unknown field; did you mean 'size_sets'?")),
    # over-long text
    (set_in(["subjects", 0, "subject"], "x" * 201), ("subjects[0].subject", "at most 200 characters (got 201)")),
    (set_in(["subjects", 1, "mood"], "m" * 121), ("subjects[1].mood", "at most 120 characters (got 121)")),
    (set_in(["subjects", 0, "quality"], ["8K", "q" * 61]), ("subjects[0].quality[1]", "at most 60 characters (got 61)")),
    (set_in(["subjects", 0, "negatives"], ["n" * 61]), ("subjects[0].negatives[0]", "at most 60 characters (got 61)")),
    (set_in(["subjects", 0, "variations"], 21), ("subjects[0].variations", "must be at most 20")),
    (set_in(["subjects", 0, "seed"], 0), ("subjects[0].seed", "must be at least 1")),
    # personal data in every prompt part
    (set_in(["subjects", 1, "mood"], "reply to jane@example.com"),
     ("subjects[1].mood", "contains personal data (email address)")),
    (set_in(["subjects", 0, "subject"], "User John Doe's face at 123 Main St"),
     ("subjects[0].subject", "contains personal data (street address)")),
    (set_in(["subjects", 0, "quality"], ["call +49 30 1234567"]),
     ("subjects[0].quality[0]", "contains personal data (phone number)")),
    (set_in(["subjects", 0, "negatives"], ["4111 1111 1111 1111"]),
     ("subjects[0].negatives[0]", "contains personal data (payment card number)")),
    (set_in(["brand", "name"], "Bloom, DE89 3704 0044 0532 0130 00"), ("brand.name", "contains personal data (IBAN)")),
    # the campaign becomes a storage path part
    (set_in(["campaign"], "spring/launch"),
     ("campaign", "must not contain '/' or a backslash: the campaign becomes a storage path part; use lowercase "
                  "letters, digits and hyphens (e.g. 'spring-launch')")),
    (set_in(["campaign"], "../etc"),
     ("campaign", "must not contain '..': the campaign becomes a storage path part; use lowercase letters, digits "
                  "and hyphens (e.g. 'etc')")),
    (set_in(["campaign"], "spring launch"),
     ("campaign", "must not contain spaces: the campaign becomes a storage path part; use lowercase letters, "
                  "digits and hyphens (e.g. 'spring-launch')")),
    (set_in(["campaign"], "Spring_Launch"),
     ("campaign", "'Spring_Launch' is not a slug: the campaign becomes a storage path part; use lowercase letters, "
                  "digits and hyphens (e.g. 'spring-launch')")),
    (set_in(["campaign"], "a" * 65), ("campaign", "at most 64 characters (got 65)")),
    # logo
    (set_in(["brand", "logo"], {"path": "logo.png", "position": "top"}),
     ("brand.logo.position", "must be 'se', 'sw', 'ne', 'nw' or 'center'; got 'top'")),
    (set_in(["brand", "logo"], {"path": "logo.png", "opacity": 1.5}), ("brand.logo.opacity", "must be at most 1.0")),
    (set_in(["brand", "logo"], {"path": "../examples/logo.png"}),
     ("brand.logo.path", "escapes the brief's folder: '..' is not allowed")),
    (set_in(["brand", "logo"], {"path": str(EXAMPLES / "logo.png")}),
     ("brand.logo.path", "escapes the brief's folder: give a path relative to the brief, not an absolute one")),
    # the brief may not point its own base folder elsewhere
    (set_in(["base_dir"], "/"), ("base_dir", "unknown field; allowed: campaign, brand, subjects, size_sets, targets, "
                                             "provider, quality, publish")),
])
def test_bad_brief_names_the_field_and_the_reason(mutate, expected):
    assert problems_for(mutate) == [expected]


def test_all_problems_are_reported_at_once():
    def mutate(data):
        data["campaign"] = "bad campaign"
        data["brand"]["palette"] = ["red"]
        data["subjects"][1]["subject"] = ""
        data["size_sets"] = ["tiktok"]

    assert [loc for loc, _ in problems_for(mutate)] == [
        "campaign", "brand.palette[0]", "subjects[1].subject", "size_sets[0]"]


def test_error_messages_do_not_echo_personal_data():
    data = copy.deepcopy(VALID)
    data["subjects"][0]["mood"] = "reply to jane@example.com"
    with pytest.raises(BriefError) as info:
        parse_brief(data, EXAMPLES)
    assert "jane@" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- logo paths on disk ---------------------------------------------------------------------

def test_missing_logo_file(tmp_path):
    problems = problems_for(set_in(["brand", "logo"], {"path": "assets/logo.png"}), tmp_path)
    [(loc, reason)] = problems
    assert loc == "brand.logo.path" and reason.startswith("file not found")


def test_logo_symlink_out_of_the_brief_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(EXAMPLES / "logo.png", outside / "logo.png")
    brief_dir = tmp_path / "brief"
    brief_dir.mkdir()
    os.symlink(outside / "logo.png", brief_dir / "logo.png")
    assert problems_for(set_in(["brand", "logo"], {"path": "logo.png"}), brief_dir) == [
        ("brand.logo.path", "escapes the brief's folder: it resolves (through a symlink) outside it")]


def test_logo_in_a_subfolder_resolves_against_the_brief_folder(tmp_path):
    (tmp_path / "assets").mkdir()
    shutil.copy(EXAMPLES / "logo.png", tmp_path / "assets" / "logo.png")
    data = {**VALID, "brand": {**VALID["brand"], "logo": {"path": "assets/logo.png"}}}
    path = write(tmp_path, "brief.yaml", yaml.safe_dump(data))
    brief = load_brief(path)
    assert brief.logo_path == (tmp_path / "assets" / "logo.png").resolve()


def test_targets_that_collide_with_the_pipelines_own_files_are_named():
    """A target called `master` would replace the full-resolution master with its crop, and one named
    like a responsive rendition would be dropped: the brief is refused, naming the target and what it
    collides with."""
    def mutate(data):
        data["targets"] = [{"name": "hero", "platform": "web", "width": 800, "height": 400},
                           {"name": "master", "platform": "web", "width": 64, "height": 64},
                           {"name": "web_jpeg_320w", "platform": "web", "width": 320, "height": 200}]
        data["publish"] = {"responsive": {"enabled": True}}

    assert problems_for(mutate) == [
        ("targets[1].name", "'master' collides with the master variant (every asset publishes its full-resolution "
                            "master as 'master'); pick another name"),
        ("targets[2].name", "'web_jpeg_320w' collides with the responsive renditions (publish.responsive names "
                            "them web_<format>_<width>w); pick another name")]


# --- files and syntax -----------------------------------------------------------------------

def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "brief.yaml", "campaign: x\nbrand:\n  name: B\n   palette: ['#fff']\n")
    with pytest.raises(BriefError) as info:
        load_brief(path)
    assert info.value.problems == [("line 4", "YAML syntax error: mapping values are not allowed here (column 11)")]
    assert info.value.source == str(path)


def test_yaml_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, "brief.yml", "campaign: a\nsubjects: []\ncampaign: b\n")
    with pytest.raises(BriefError) as info:
        load_brief(path)
    assert info.value.problems == [("line 3", "YAML syntax error: duplicate key 'campaign' (column 1)")]


def test_json_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "brief.json", '{"campaign": "x",\n "brand": }\n')
    with pytest.raises(BriefError) as info:
        load_brief(path)
    assert info.value.problems == [("line 2", "JSON syntax error: Expecting value (column 11)")]


@pytest.mark.parametrize("name, text, expected", [
    ("brief.yaml", "", ("brief", "the brief is empty")),
    ("brief.yaml", "- a\n- b\n", ("brief", "expected a mapping of fields at the top level, got a list")),
    ("brief.txt", "campaign: x", ("file", "unsupported extension '.txt'; use .yaml, .yml or .json")),
])
def test_unusable_files(tmp_path, name, text, expected):
    with pytest.raises(BriefError) as info:
        load_brief(write(tmp_path, name, text))
    assert info.value.problems == [expected]


def test_missing_brief_file(tmp_path):
    with pytest.raises(BriefError) as info:
        load_brief(tmp_path / "nope.yaml")
    assert info.value.problems == [("file", "file not found")]


def test_brief_error_message_lists_every_problem(tmp_path):
    path = write(tmp_path, "brief.yaml", yaml.safe_dump({**VALID, "campaign": "A B", "size_sets": ["tiktok"]}))
    with pytest.raises(BriefError) as info:
        load_brief(path)
    message = str(info.value)
    assert message.startswith(f"invalid brief in {path}:\n")
    assert "  campaign: must not contain spaces" in message and "  size_sets[0]: unknown size set" in message


# --- invisible and control characters in prompt text ----------------------------------------
# Every prompt part (subject, mood, quality words, negatives, brand name) refuses what renders as
# nothing or changes how text is displayed; line breaks and tabs become one space.

@pytest.mark.parametrize("path, value, expected", [
    (["subjects", 0, "subject"], "a mug\x00with a NUL",
     ("subjects[0].subject", "contains a control character (U+0000) at position 6; remove it")),
    (["subjects", 0, "subject"], "a mug \x1b[31mred",
     ("subjects[0].subject", "contains a control character (U+001B) at position 7; remove it")),
    (["subjects", 0, "subject"], "a mug \u202egnp.exe",
     ("subjects[0].subject", "contains a bidirectional-text control (U+202E RIGHT-TO-LEFT OVERRIDE) at position 7, "
                             "which changes how the text is displayed, not what it says; remove it")),
    (["subjects", 1, "mood"], "calm \u2066isolated\u2069",
     ("subjects[1].mood", "contains a bidirectional-text control (U+2066 LEFT-TO-RIGHT ISOLATE) at position 6 "
                          "(and 1 more), which changes how the text is displayed, not what it says; remove it")),
    (["subjects", 0, "quality"], ["sharp\u200bfocus"],
     ("subjects[0].quality[0]", "contains an invisible formatting character (U+200B ZERO WIDTH SPACE) at "
                                "position 6; remove it")),
    (["subjects", 0, "negatives"], ["\ufeffblurry"],
     ("subjects[0].negatives[0]", "contains an invisible formatting character (U+FEFF ZERO WIDTH NO-BREAK SPACE) "
                                  "at position 1; remove it")),
    (["brand", "name"], "Bl\u00adoom",
     ("brand.name", "contains an invisible formatting character (U+00AD SOFT HYPHEN) at position 3; remove it")),
    (["subjects", 0, "subject"], "a mug \u200d on a table",
     ("subjects[0].subject", "contains an invisible formatting character (U+200D ZERO WIDTH JOINER) at position 7 "
                             "that joins nothing; a joiner is allowed only between letters or inside an emoji "
                             "sequence")),
    (["subjects", 0, "subject"], "a mug \ud800",
     ("subjects[0].subject", "contains a lone surrogate (U+D800) at position 7, which is not valid Unicode text; "
                             "remove it")),
    # a field made only of invisible characters would give an empty prompt part
    (["subjects", 0, "subject"], "\u200b\u200b\u200b",
     ("subjects[0].subject", "has no visible characters (only U+200B ZERO WIDTH SPACE)")),
    (["subjects", 0, "subject"], " \u200d\u2060 ",
     ("subjects[0].subject", "has no visible characters (only U+200D ZERO WIDTH JOINER, U+2060 WORD JOINER)")),
    (["subjects", 0, "subject"], "\u3164\u3164", ("subjects[0].subject", "has no visible characters (only U+3164 "
                                                                         "HANGUL FILLER)")),
    (["subjects", 0, "subject"], "\u2800", ("subjects[0].subject", "has no visible characters (only U+2800 "
                                                                    "BRAILLE PATTERN BLANK)")),
    (["subjects", 1, "mood"], "\u0301", ("subjects[1].mood", "has no visible characters (only U+0301 COMBINING "
                                                              "ACUTE ACCENT)")),
    (["brand", "name"], "\x1c", ("brand.name", "has no visible characters (only U+001C)")),
], ids=["nul", "escape", "rlo", "isolates", "zwsp", "bom", "soft-hyphen", "stray-zwj", "surrogate", "only-zwsp",
        "only-joiners", "only-hangul-filler", "only-braille-blank", "only-combining-mark", "only-separator"])
def test_invisible_and_control_characters_are_refused(path, value, expected):
    assert problems_for(set_in(path, value)) == [expected]


@pytest.mark.parametrize("text", [
    "ein Café mit Blüten 🌷 – 東京の朝, ñandú",
    "a developer 👩\u200d💻 at a desk",                      # ZWJ sequence
    "a family 👨\u200d👩\u200d👧\u200d👦 picnic",           # several ZWJs
    "a wave 👋🏽 and a heart ❤️",                             # skin tone modifier, variation selector 16
    "an eye in a speech bubble 👁️\u200d🗨️",                  # ZWJ after a variation selector
    "the flag 🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F of Scotland",  # tag sequence
    "a poster reading می\u200cخواهم",                      # ZWNJ inside a Persian word
    "क्\u200dष in Devanagari",                                # ZWJ in an Indic conjunct
    "a non\u00a0breaking space",
])
def test_legitimate_unicode_is_kept_as_written(text):
    data = copy.deepcopy(VALID)
    data["subjects"][0]["subject"] = text
    data["subjects"][0]["mood"] = text[:120]
    data["brand"]["name"] = text[:80]
    brief = parse_brief(data, EXAMPLES)
    assert brief.subjects[0].subject == text and brief.subjects[0].mood == text[:120]
    assert brief.brand.name == text[:80]


def test_line_breaks_and_tabs_in_prompt_text_become_single_spaces(tmp_path):
    text = ("campaign: spring-launch\n"
            "brand: {name: Bloom, palette: ['#ff6b6b']}\n"
            "subjects:\n"
            "  - subject: |\n"
            "      a ceramic mug\n"
            "        with fresh tulips\n"
            "    mood: \"calm\\tquiet\\r\\nmorning\\u2028light\"\n"
            "    negatives: [\"blurry\\n\"]\n")
    subject = load_brief(write(tmp_path, "brief.yaml", text)).subjects[0]
    assert subject.subject == "a ceramic mug with fresh tulips"
    assert subject.mood == "calm quiet morning light"
    assert subject.negatives == ["blurry"]


def test_invisible_character_errors_name_the_code_point_not_the_text():
    data = copy.deepcopy(VALID)
    data["subjects"][0]["subject"] = "jane.doe@example.com \u202e"
    with pytest.raises(BriefError) as info:
        parse_brief(data, EXAMPLES)
    assert "jane.doe" not in str(info.value) and "U+202E" in str(info.value)


# --- hostile input: duplicate JSON keys, size, nesting, booleans and NaN for numbers ---------

def load_problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(BriefError) as info:
        load_brief(path)
    error = info.value  # no chained exception: its traceback would show the parser's internals
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error.problems


@pytest.mark.parametrize("text, expected", [
    ('{"campaign": "a",\n "subjects": [],\n "campaign": "b"}',
     ("line 3", "JSON syntax error: duplicate key 'campaign' (column 2)")),
    ('{"brand": {"name": "A", "palette": ["#fff"],\n  "name": "B"}}',
     ("line 2", "JSON syntax error: duplicate key 'name' (column 3)")),
    ('{"subjects": [{"subject": "a"}, {"subject": "b",\n "seed": 1, "seed": 2}]}',
     ("line 2", "JSON syntax error: duplicate key 'seed' (column 13)")),
    ('{"campaign": "a", "c\\u0061mpaign": "b"}', ("line 1", "JSON syntax error: duplicate key 'campaign' (column 19)")),
], ids=["top-level", "nested", "in-a-list", "escaped-the-same"])
def test_json_duplicate_keys_are_an_error(tmp_path, text, expected):
    assert load_problems(write(tmp_path, "brief.json", text)) == [expected]


def test_json_keys_may_repeat_in_different_objects_and_syntax_errors_come_first(tmp_path):
    data = {**VALID, "subjects": [{"subject": "a", "seed": 1}, {"subject": "b", "seed": 2}]}
    assert load_brief(write(tmp_path, "brief.json", json.dumps(data))).subjects[1].seed == 2
    assert load_problems(write(tmp_path, "broken.json", '{"campaign": "a", "campaign": }')) == [
        ("line 1", "JSON syntax error: Expecting value (column 31)")]


def test_a_brief_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from imagegen.brief_source import MAX_BRIEF_BYTES

    path = tmp_path / "brief.yaml"
    with path.open("wb") as file:  # sparse: 50 MB on paper, nothing on disk
        file.truncate(50_000_000)
    opened = []
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self))
    assert load_problems(path) == [("file", f"the brief is over {MAX_BRIEF_BYTES} bytes")]
    assert opened == [], "the size is checked on the file's stat, before it is opened"


def test_a_brief_is_read_no_further_than_the_size_cap(tmp_path):
    from imagegen.brief_source import MAX_BRIEF_BYTES

    endless = tmp_path / "brief.yaml"
    endless.symlink_to("/dev/zero")  # its stat says 0 bytes; reading it never ends
    assert load_problems(endless) == [("file", f"the brief is over {MAX_BRIEF_BYTES} bytes")]


def test_a_brief_of_exactly_the_size_cap_loads(tmp_path):
    from imagegen.brief_source import MAX_BRIEF_BYTES

    text = yaml.safe_dump(VALID)
    text += "#" * (MAX_BRIEF_BYTES - len(text) - 1) + "\n"
    assert load_brief(write(tmp_path, "brief.yaml", text)).campaign == "spring-launch"


def test_brief_text_over_the_size_cap_is_refused():
    from imagegen.brief_source import MAX_BRIEF_BYTES, brief_from_source

    with pytest.raises(BriefError) as info:
        brief_from_source(yaml.safe_dump(VALID) + "#" * MAX_BRIEF_BYTES)
    assert info.value.problems == [("brief", f"the brief is over {MAX_BRIEF_BYTES} bytes")]


DEEP = "lists and mappings nested more than 32 levels deep"


@pytest.mark.parametrize("levels", [33, 500, 100_000])
@pytest.mark.parametrize("name, text", [
    ("flow.yaml", lambda n: "campaign: x\nextra: " + "[" * n + "]" * n + "\n"),
    ("block.yml", lambda n: "campaign: x\nextra:\n" + "- " * n + "x\n"),
    ("brief.json", lambda n: '{"campaign": "x",\n "extra": ' + "[" * n + "]" * n + "}"),
], ids=["yaml-flow", "yaml-block", "json"])
def test_nesting_deeper_than_the_cap_is_refused_before_the_parser_recurses(tmp_path, name, text, levels):
    # the top-level mapping is the first level: the 32nd '[' (or '- ') is the 33rd level
    problems = load_problems(write(tmp_path, name, text(levels)))
    line, column = {"flow.yaml": (2, 39), "block.yml": (3, 63), "brief.json": (2, 42)}[name]
    assert problems == [(f"line {line}", f"{DEEP} (column {column})")]


@pytest.mark.parametrize("name, text", [
    ("brief.yaml", "extra: " + "[" * 31 + "]" * 31 + "\n"),
    ("brief.json", '{"extra": ' + "[" * 31 + "]" * 31 + "}"),
], ids=["yaml", "json"])
def test_nesting_up_to_the_cap_parses(tmp_path, name, text):
    # 32 levels parse: the brief is then refused for its content, not its depth
    assert ("extra", "unknown field; allowed: campaign, brand, subjects, size_sets, targets, provider, quality, "
                     "publish") in load_problems(write(tmp_path, name, text))


def test_yaml_aliases_cannot_build_deep_nesting(tmp_path):
    # each anchor nests the one before 20 levels deeper: 5 of them are 100 levels deep
    lines = ["a0: &a0 " + "[" * 20 + "]" * 20]
    lines += [f"a{i}: &a{i} " + "[" * 20 + f"*a{i - 1}" + "]" * 20 for i in range(1, 5)]
    assert load_problems(write(tmp_path, "brief.yaml", "\n".join(lines))) == [
        ("a1" + "[0]" * 20, DEEP)]


def test_a_yaml_alias_loop_is_refused(tmp_path):
    assert load_problems(write(tmp_path, "brief.yaml", "campaign: x\nbrand: &b {name: B, palette: [*b]}\n")) == [
        ("brand.palette[0]", "refers to a list or mapping it is inside (a YAML alias loop)")]


def test_deep_data_handed_over_from_code_is_refused_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert problems_for(set_in(["subjects", 0, "quality"], deep)) == [("subjects[0].quality" + "[0]" * 29, DEEP)]


def _number_fields(model=Brief, prefix=()):
    """(path, whole) for every int or float field reachable from Brief, lists entered at index 0."""
    from imagegen.brief_checks import _options

    for name, field in model.model_fields.items():
        options = _options(field.annotation)
        if bool not in options and (int in options or float in options):
            yield (*prefix, name), int in options
        for option in options:
            inner = typing.get_args(option)[0] if typing.get_origin(option) is list else option
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                index = (0,) if inner is not option else ()
                yield from _number_fields(inner, (*prefix, name, *index))


# nested mappings with required fields, given so that they validate (the examples' logo is a PNG)
REQUIRED_PARTS = {"logo": {"path": "logo.png"}, "inpaint": {"mask": "logo.png", "instruction": "add a spoon"}}


def _with_value_at(path, value) -> dict:
    """VALID with every mapping on `path` present (a target and a logo that validate), then value set."""
    data = copy.deepcopy(VALID)
    data["targets"] = [{"name": "hero", "platform": "web", "width": 640, "height": 640}]
    node = data
    for key in path[:-1]:
        node = node[key] if isinstance(key, int) else node.setdefault(key, copy.deepcopy(REQUIRED_PARTS.get(key, {})))
    node[path[-1]] = value
    return data


def format_path(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


NUMBER_FIELDS = sorted(_number_fields())


def test_the_number_fields_are_all_found():
    found = {format_path(path) for path, _ in NUMBER_FIELDS}
    assert {"subjects[0].variations", "subjects[0].seed", "targets[0].width", "targets[0].max_bytes",
            "brand.logo.opacity", "brand.border.width", "quality.max_noise_sigma", "provider.master_height",
            "publish.responsive.max_images", "publish.outpaint.min_crop"} <= found
    assert len(found) >= 25


@pytest.mark.parametrize("path, whole", NUMBER_FIELDS, ids=[format_path(p) for p, _ in NUMBER_FIELDS])
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(path, whole, value):
    problems = parse_problems(_with_value_at(path, value))
    assert problems == [(format_path(path), f"expected a{' whole' if whole else ''} number, got true/false")]


@pytest.mark.parametrize("path, whole", NUMBER_FIELDS, ids=[format_path(p) for p, _ in NUMBER_FIELDS])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_infinities_are_not_numbers(path, whole, value):
    assert parse_problems(_with_value_at(path, value)) == [
        (format_path(path), "must be a finite number, not NaN or infinity")]


def parse_problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(BriefError) as info:
        parse_brief(data, EXAMPLES)
    return info.value.problems


def test_true_false_fields_still_take_booleans_and_number_fields_numbers():
    data = _with_value_at(("quality", "check_brand_colors"), False)
    data["quality"].update(vlm_review=True, max_noise_sigma=3, min_width=512)
    data["subjects"][0].update(variations=2, seed=7)
    brief = parse_brief(data, EXAMPLES)
    assert (brief.quality.check_brand_colors, brief.quality.vlm_review) == (False, True)
    assert (brief.quality.max_noise_sigma, brief.subjects[0].variations, brief.subjects[0].seed) == (3.0, 2, 7)


def test_booleans_and_other_problems_are_reported_together():
    data = _with_value_at(("subjects", 0, "seed"), False)  # taken as 0, pydantic would say "must be at least 1"
    data["campaign"] = "A B"
    assert [loc for loc, _ in parse_problems(data)] == ["subjects[0].seed", "campaign"]


def test_yaml_and_json_spellings_of_booleans_and_nan(tmp_path):
    yaml_text = ("campaign: x\nbrand: {name: B, palette: ['#fff']}\nsubjects: [{subject: a mug, variations: yes}]\n"
                 "quality: {max_noise_sigma: .nan, min_sharpness: .inf, max_blockiness: -.Inf}\n")
    assert load_problems(write(tmp_path, "brief.yaml", yaml_text)) == [
        ("subjects[0].variations", "expected a whole number, got true/false"),
        ("quality.min_sharpness", "must be a finite number, not NaN or infinity"),
        ("quality.max_blockiness", "must be a finite number, not NaN or infinity"),
        ("quality.max_noise_sigma", "must be a finite number, not NaN or infinity")]
    json_text = ('{"campaign": "x", "brand": {"name": "B", "palette": ["#fff"]}, "subjects": [{"subject": "a mug", '
                 '"variations": true}], "quality": {"max_noise_sigma": NaN, "min_sharpness": Infinity, '
                 '"max_blockiness": -Infinity}}')
    assert load_problems(write(tmp_path, "brief.json", json_text)) == load_problems(tmp_path / "brief.yaml")


@pytest.mark.parametrize("name, text, expected", [
    ("brief.yaml", "campaign: x\nextra: " + "1" * 5000 + "\n",
     ("line 2", "cannot read a number with more than 4300 digits (column 8)")),
    ("brief.json", '{"extra": ' + "1" * 5000 + "}", ("file", "cannot read a number with more than 4300 digits")),
    ("brief.yaml", "campaign: x\nextra: 2024-13-01\n",
     ("line 2", "cannot read the value: month must be in 1..12 (column 8)")),
], ids=["yaml-long-number", "json-long-number", "yaml-impossible-date"])
def test_values_python_cannot_hold_are_refused_not_a_traceback(tmp_path, name, text, expected):
    assert load_problems(write(tmp_path, name, text)) == [expected]
