"""Faces: the Haar detector against faces whose boxes are known (drawn here, or planned by the local
renderer), the face sharpness and exposure columns, the bounded enhancement (nothing away from a face
changes), and crops that never cut through a face."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from imagegen.imaging.crop import plan_crop, plan_crop_keeping, saliency_map
from imagegen.imaging.faces import (
    MAX_DELTA,
    detect_faces,
    enhance_faces,
    feather_region,
    measure_faces,
)
from imagegen.render.renderer import describe_scene, render_local

PALETTE = ["#1a1a2e", "#e94560", "#f4f1ea"]


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def draw_face(img: Image.Image, head: tuple[float, float, float, float], skin=(224, 180, 150),
              hair=(60, 40, 30)) -> None:
    """A frontal head (hair, skin, eye sockets, eyes, brows, nose shadow, mouth) filling `head`."""
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = head
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    shade = lambda c, f: tuple(int(v * f) for v in c)  # noqa: E731
    d.ellipse((cx - w * 0.58, y0 - h * 0.08, cx + w * 0.58, cy + h * 0.25), fill=hair)
    d.rectangle((cx - w * 0.2, cy + h * 0.3, cx + w * 0.2, y1 + h * 0.25), fill=shade(skin, 0.85))
    d.ellipse(head, fill=skin)
    d.chord((cx - w * 0.52, y0 - h * 0.06, cx + w * 0.52, y0 + h * 0.45), 180, 360, fill=hair)
    ey = cy - h * 0.08
    for s in (-1, 1):
        ex = cx + s * w * 0.22
        d.ellipse((ex - w * 0.16, ey - h * 0.07, ex + w * 0.16, ey + h * 0.06), fill=shade(skin, 0.8))
        d.ellipse((ex - w * 0.11, ey - h * 0.035, ex + w * 0.11, ey + h * 0.035), fill=(240, 240, 235))
        d.ellipse((ex - w * 0.045, ey - h * 0.035, ex + w * 0.045, ey + h * 0.035), fill=(50, 35, 25))
        d.line((ex - w * 0.14, ey - h * 0.085, ex + w * 0.13, ey - h * 0.1), fill=hair, width=max(2, int(h * 0.025)))
    d.polygon([(cx, cy - h * 0.02), (cx - w * 0.07, cy + h * 0.14), (cx + w * 0.07, cy + h * 0.14)],
              fill=shade(skin, 0.88))
    d.ellipse((cx - w * 0.08, cy + h * 0.12, cx + w * 0.08, cy + h * 0.17), fill=shade(skin, 0.7))
    d.ellipse((cx - w * 0.17, cy + h * 0.24, cx + w * 0.17, cy + h * 0.31), fill=(150, 60, 60))


def picture(size=(1024, 768), heads=(), bg=(120, 140, 170), blur: float = 1.5) -> Image.Image:
    img = Image.new("RGB", size, bg)
    for head in heads:
        draw_face(img, head)
    return img.filter(ImageFilter.GaussianBlur(blur)) if blur else img


def head_box(cx: float, cy: float, height: float) -> tuple[float, float, float, float]:
    width = 0.74 * height
    return cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2


# --------------------------------------------------------------------------- detection

@pytest.mark.parametrize("heads", [
    [head_box(512, 384, 300)],
    [head_box(200, 300, 180)],                              # small, off centre
    [head_box(90, 384, 200)],                               # near the left edge
    [head_box(300, 380, 260), head_box(760, 360, 200)],     # two faces, largest first
])
def test_detects_drawn_faces_where_they_are(heads):
    img = picture(heads=heads)
    found = detect_faces(img)
    assert len(found) == len(heads)
    for box, head in zip(found, heads):  # the order: largest first, as drawn
        assert iou(box, head) >= 0.5, (box, head)


def test_finds_no_face_in_a_faceless_picture():
    img = Image.new("RGB", (800, 600), (200, 190, 170))
    ImageDraw.Draw(img).ellipse((300, 200, 500, 400), fill=(30, 60, 160))
    assert detect_faces(img) == []
    assert measure_faces(img) == {"face_count": 0, "face_boxes": [], "face_sharpness": None, "face_luma": None}


def test_the_local_renderer_draws_faces_the_detector_finds_where_the_scene_planned_them():
    found = total = 0
    for style, lighting, composition, seed in itertools.product(
            ["portrait", "product", "vintage"], ["portrait", "natural"], ["rule_of_thirds", "centered"], [1, 2]):
        spec = {"subject": "a woman smiling", "style": style, "lighting": lighting, "composition": composition,
                "palette": PALETTE}
        scene = describe_scene(spec, seed, 512, 512)
        assert scene["hero"] == "face"
        boxes = detect_faces(render_local(spec, seed, 512, 512))
        total += 1
        found += any(iou(box, scene["hero_box"]) >= 0.5 for box in boxes)
    assert found >= 0.8 * total, f"{found} of {total} faces found"


def test_product_renders_show_no_face():
    false_faces = sum(bool(detect_faces(render_local(
        {"subject": subject, "style": style, "lighting": "natural", "palette": PALETTE}, seed, 512, 512)))
        for subject, style, seed in itertools.product(["a ceramic mug", "a perfume bottle", "a wrist watch"],
                                                      ["product", "portrait"], [1, 2, 3]))
    assert false_faces <= 1


def test_a_subject_naming_a_person_gets_a_face_other_subjects_keep_their_hero():
    assert describe_scene({"subject": "headshot of a person"}, 1, 256, 256)["hero"] == "face"
    assert describe_scene({"subject": "a face serum bottle"}, 1, 256, 256)["hero"] == "bottle"


# --------------------------------------------------------------------------- measurements

def test_face_sharpness_falls_with_blur_whatever_the_resolution():
    values = {}
    for side in (512, 2048):
        scale = side / 512
        sharp = picture((side, side), [head_box(256 * scale, 256 * scale, 256 * scale)], blur=1.0 * scale)
        blurred = sharp.filter(ImageFilter.GaussianBlur(4 * scale))
        values[side] = (measure_faces(sharp)["face_sharpness"], measure_faces(blurred)["face_sharpness"])
        assert values[side][1] < 30 < values[side][0]
    assert values[2048][0] == pytest.approx(values[512][0], rel=0.25)


def test_face_luma_reads_the_worst_exposed_face():
    img = picture(heads=[head_box(300, 380, 260), head_box(760, 360, 200)])
    dark = ImageEnhance.Brightness(img).enhance(0.35)
    bright, dim = measure_faces(img)["face_luma"], measure_faces(dark)["face_luma"]
    assert 150 < bright < 215 and dim < 70


# --------------------------------------------------------------------------- enhancement

def test_enhancement_is_bounded_and_leaves_everything_away_from_the_faces_alone():
    heads = [head_box(300, 380, 260)]
    img = ImageEnhance.Brightness(picture(heads=heads)).enhance(0.35)
    box = detect_faces(img)[0]
    out = enhance_faces(img, strength=0.5)
    before, after = np.asarray(img, np.int16), np.asarray(out, np.int16)
    rx0, ry0, rx1, ry1 = feather_region(box, img.width, img.height)
    outside = np.ones(before.shape[:2], bool)
    outside[ry0:ry1, rx0:rx1] = False
    assert np.array_equal(before[outside], after[outside])
    assert np.abs(after - before).max() <= 0.5 * MAX_DELTA
    assert np.abs(after - before)[box[1]:box[3], box[0]:box[2]].mean() > 3  # the face itself did change


def test_enhancement_lifts_a_dark_face_and_sharpens_a_soft_one():
    img = picture(heads=[head_box(512, 384, 300)])
    dark = ImageEnhance.Brightness(img).enhance(0.35)
    assert measure_faces(dark)["face_luma"] < 70 <= measure_faces(enhance_faces(dark))["face_luma"]
    soft = img.filter(ImageFilter.GaussianBlur(4))
    assert measure_faces(enhance_faces(soft))["face_sharpness"] > 2 * measure_faces(soft)["face_sharpness"]


def test_enhancement_without_a_face_changes_nothing_and_refuses_unbounded_strength():
    img = Image.new("RGB", (300, 200), (90, 120, 150))
    assert enhance_faces(img).tobytes() == img.tobytes()
    with pytest.raises(ValueError, match="strength"):
        enhance_faces(img, boxes=[(10, 10, 60, 60)], strength=1.5)


# --------------------------------------------------------------------------- crops

def test_a_crop_keeps_a_face_whole_that_saliency_alone_would_cut():
    # a face at the left edge, a loud red object on the right: saliency alone slides the 9:16 window right
    img = picture((1000, 1000), [head_box(150, 450, 300)])
    ImageDraw.Draw(img).rectangle((620, 300, 980, 900), fill=(220, 20, 30))
    face = detect_faces(img)[0]
    sal = saliency_map(img)
    plain = plan_crop(sal, 1000, 1000, 1080, 1920)
    assert not (plain[0] <= face[0] and plain[2] >= face[2]), "the scene must be one saliency alone cuts"
    plan = plan_crop_keeping(sal, 1000, 1000, 1080, 1920, [face])
    assert plan.box[0] <= face[0] and plan.box[2] >= face[2] and plan.note is None


def test_without_faces_the_plan_is_the_saliency_plan():
    img = picture((1000, 700), [])
    ImageDraw.Draw(img).ellipse((700, 200, 900, 400), fill=(220, 20, 30))
    sal = saliency_map(img)
    assert plan_crop_keeping(sal, 1000, 700, 1080, 1350).box == plan_crop(sal, 1000, 700, 1080, 1350)


def test_faces_that_cannot_all_fit_keep_the_largest_whole_and_cut_none():
    sal = np.zeros((256, 256), np.float32)
    big, small = (60, 400, 300, 640), (760, 420, 940, 600)  # 1000 px square; a 9:16 window is 562 px wide
    plan = plan_crop_keeping(sal, 1000, 1000, 1080, 1920, [big, small])
    left, right = plan.box[0], plan.box[2]
    assert left <= big[0] and right >= big[2]
    assert right <= small[0] or left >= small[2]  # the other face is left out, not cut
    assert plan.note and "kept 1 of 2 faces whole" in plan.note


def test_a_face_larger_than_the_crop_is_centred_and_the_note_says_it_is_cut():
    sal = np.zeros((256, 256), np.float32)
    face = (200, 100, 800, 700)  # 600 px wide; a 9:16 window of a 1000 px square is 562 px
    plan = plan_crop_keeping(sal, 1000, 1000, 1080, 1920, [face])
    assert abs((plan.box[0] + plan.box[2]) / 2 - 500) <= 1
    assert plan.note and "larger than the crop" in plan.note


def test_a_face_at_the_edge_is_kept_with_the_window_against_that_edge():
    sal = np.zeros((256, 256), np.float32)
    face = (0, 300, 180, 480)
    plan = plan_crop_keeping(sal, 1000, 1000, 1080, 1920, [face])
    assert plan.box[0] == 0 and plan.box[2] >= 180 and plan.note is None
