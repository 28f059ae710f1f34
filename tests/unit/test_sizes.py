"""Targets, built-in size sets and how a brief's sets and explicit targets combine."""

import pytest
from pydantic import ValidationError

from imagegen.sizes import BUILTIN_SIZE_SETS, PLATFORMS, Target, resolve_targets


def sizes(set_name):
    return {t.name: (t.platform, t.width, t.height) for t in BUILTIN_SIZE_SETS[set_name]}


def test_builtin_sets_have_the_documented_sizes():
    assert sizes("instagram") == {
        "instagram_square": ("instagram", 1080, 1080),
        "instagram_portrait": ("instagram", 1080, 1350),
        "instagram_story": ("instagram", 1080, 1920),
    }
    assert sizes("facebook") == {"facebook_link": ("facebook", 1200, 630), "facebook_feed": ("facebook", 1080, 1080)}
    assert sizes("x") == {"x_post": ("x", 1600, 900)}
    assert sizes("linkedin") == {"linkedin_post": ("linkedin", 1200, 627)}
    assert sizes("pinterest") == {"pinterest_pin": ("pinterest", 1000, 1500)}
    assert sizes("youtube") == {"youtube_thumbnail": ("youtube", 1280, 720)}


def test_social_is_every_platform_set_and_weekly_is_instagram_plus_facebook():
    platform_sets = ["instagram", "facebook", "x", "linkedin", "pinterest", "youtube"]
    assert [t.name for t in BUILTIN_SIZE_SETS["social"]] == [
        t.name for s in platform_sets for t in BUILTIN_SIZE_SETS[s]]
    assert sizes("social_weekly") == {**sizes("instagram"), **sizes("facebook")}


def test_builtin_targets_are_valid_jpeg_with_feed_budgets():
    for target in BUILTIN_SIZE_SETS["social"]:
        assert target.format == "JPEG"
        assert target.platform in PLATFORMS
        expected = 2_000_000 if target.platform == "youtube" else 1_000_000
        assert target.max_bytes == expected


def test_target_aspect_and_extension():
    target = Target(name="instagram_portrait", platform="instagram", width=1080, height=1350)
    assert target.aspect == pytest.approx(0.8)
    assert target.extension == "jpg"


def test_absent_max_bytes_takes_the_platform_default_but_explicit_null_means_no_limit():
    assert Target(name="hero", platform="web", width=1920, height=600).max_bytes == 500_000
    assert Target(name="hero", platform="web", width=1920, height=600, max_bytes=None).max_bytes is None
    assert Target(name="poster", platform="print", width=2000, height=3000).max_bytes is None


def test_format_and_platform_aliases_are_normalised():
    target = Target(name="t", platform="Twitter", width=100, height=100, format="jpg")
    assert (target.platform, target.format) == ("x", "JPEG")
    assert Target(name="t", platform="web", width=100, height=100, format="webp").format == "WEBP"


@pytest.mark.parametrize("fields, loc, reason", [
    ({"platform": "myspace"}, "platform", "unknown platform 'myspace'; known: instagram"),
    ({"format": "GIF"}, "format", "unknown format 'GIF'; use one of PNG, JPEG, WEBP, AVIF"),
    ({"width": 15}, "width", "greater than or equal to 16"),
    ({"height": 8193}, "height", "less than or equal to 8192"),
    ({"name": "Web Hero"}, "name", "not a target name: 'Web Hero'"),
    ({"name": "../x"}, "name", "not a target name"),
])
def test_bad_targets_are_rejected(fields, loc, reason):
    data = {"name": "t", "platform": "web", "width": 100, "height": 100, **fields}
    with pytest.raises(ValidationError) as info:
        Target(**data)
    [error] = info.value.errors()
    assert error["loc"] == (loc,)
    assert reason in error["msg"]


def test_resolve_targets_dedupes_sets_that_overlap():
    targets = resolve_targets(["instagram", "social_weekly", "instagram"], [])
    assert [t.name for t in targets] == [
        "instagram_square", "instagram_portrait", "instagram_story", "facebook_link", "facebook_feed"]


def test_explicit_target_overrides_builtin_in_place_and_new_ones_are_appended():
    square_png = Target(name="instagram_square", platform="instagram", width=1080, height=1080, format="PNG")
    hero = Target(name="web_hero", platform="web", width=1920, height=600, format="WEBP")
    targets = resolve_targets(["instagram"], [hero, square_png])
    assert [t.name for t in targets] == ["instagram_square", "instagram_portrait", "instagram_story", "web_hero"]
    assert targets[0].format == "PNG"


def test_resolve_targets_rejects_unknown_sets():
    with pytest.raises(ValueError, match="unknown size set 'tiktok'; known: facebook, instagram"):
        resolve_targets(["tiktok"], [])


def test_crop_loss_is_the_share_a_centre_crop_cuts_away():
    from imagegen.sizes import Target, crop_loss

    wide = Target(name="wide", platform="web", width=1600, height=900, format="JPEG")
    square = Target(name="sq", platform="web", width=500, height=500, format="JPEG")
    assert crop_loss(1024, 1024, square) == 0
    assert round(crop_loss(1024, 1024, wide), 4) == round(1 - 900 / 1600, 4)
    assert crop_loss(1600, 900, wide) == 0


def test_outpaint_groups_keep_mild_crops_and_extend_severe_ones_by_nearest_common_ratio():
    from imagegen.sizes import Target, outpaint_groups

    targets = [Target(name="sq", platform="web", width=1080, height=1080, format="JPEG"),
               Target(name="portrait", platform="web", width=1080, height=1350, format="JPEG"),  # 20 % off
               Target(name="link", platform="web", width=1200, height=627, format="JPEG"),  # 1.91:1
               Target(name="x", platform="web", width=1600, height=900, format="JPEG"),
               Target(name="story", platform="web", width=1080, height=1920, format="JPEG")]
    kept, extended = outpaint_groups(targets, 1024, 1024, min_crop=0.25)
    assert [t.name for t in kept] == ["sq", "portrait"]
    assert {ratio: [t.name for t in ts] for ratio, ts in extended.items()} == {
        "1.91:1": ["link"], "16:9": ["x"], "9:16": ["story"]}
    kept, extended = outpaint_groups(targets, 1024, 1024, min_crop=0.99)
    assert len(kept) == 5 and extended == {}


@pytest.mark.parametrize("name, collides_with", [
    ("master", "the master variant"),
    ("web_jpeg_320w", "the responsive renditions"),
    ("web_avif_1600w", "the responsive renditions"),
])
def test_a_target_may_not_take_a_name_the_pipeline_gives_its_own_files(name, collides_with):
    with pytest.raises(ValidationError) as info:
        Target(name=name, platform="web", width=64, height=64)
    assert f"{name!r} collides with {collides_with}" in str(info.value)


@pytest.mark.parametrize("name", ["master_square", "web_hero", "web_jpeg_320", "web_gif_320w", "masters"])
def test_names_close_to_the_reserved_ones_are_fine(name):
    assert Target(name=name, platform="web", width=64, height=64).name == name
