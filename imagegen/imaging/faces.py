"""Faces in a picture: where they are (OpenCV's frontal-face Haar cascade), how sharp and how well
exposed each one is (the faces gate's columns), and a bounded local enhancement of the face regions
(the faces gate's remedy) that leaves every pixel away from the faces as it was.

The cascade file ships inside the `opencv-python-headless` wheel (`cv2.data.haarcascades`): nothing is
downloaded. OpenCV 5 dropped the Haar cascades (and `CascadeClassifier`), hence the 4.x pin in
pyproject.toml. cv2 is imported where it is used: the CLI's start does not pay for it.

Boxes are (left, top, right, bottom) in pixels of the image they were found in, largest face first.

Units, for whoever sets policy thresholds:

- ``face_sharpness``: variance of the Laplacian (imagegen.imaging.metrics.sharpness) of the face box
  resampled to `FACE_ANALYSIS_SIDE` px, the sharpness of the least sharp face. Resampling every face to
  one size lets one threshold serve a thumbnail-sized face and a close-up alike.
- ``face_luma``: mean grey level 0..255 of the central part of a face box (skin, not hair or background),
  of the face furthest from mid-grey: the worst exposed one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagegen.imaging.metrics import sharpness

Box = tuple[int, int, int, int]

# The columns measure_faces adds to a master's measurements (and the gate's rows).
FACE_COLUMNS = ("face_count", "face_boxes", "face_sharpness", "face_luma")

# alt2 over the "default" cascade: on the local renderer's scenes (144 with a face, 120 without) it finds
# 92 % of the faces with a false face in 1-3 of 120 pictures; "default" found 80 %, a false face in 1 of 6
# (bench/bench_faces.py).
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"
# Faces are looked for with the long side at most this many pixels: the cascade's cost grows with the
# pixel count, and a face that is a few dozen pixels here is still found (a 2048 px master: 2.5x smaller).
DETECT_SIDE = 800
# Faces smaller than this share of the short side are not looked for: background specks, not subjects.
MIN_FACE_SHARE = 0.06
# detectMultiScale's defaults, written out: each scale 10 % larger, 5 overlapping hits make a face.
_SCALE_STEP = 1.1
_MIN_NEIGHBOURS = 5
_DETECT_CLAHE_CLIP = 3.0
_DETECT_CLAHE_TILES = (8, 8)
# Every face is measured at this width (the Haar box is square).
FACE_ANALYSIS_SIDE = 128
# The central share of a face box whose mean is its exposure: the box's corners hold hair and background.
_SKIN_SHARE = 0.6

# Enhancement bounds: each face pixel moves by at most MAX_DELTA grey levels per channel; the change
# fades out over FEATHER x the face size around the box, and nothing beyond that is touched.
MAX_DELTA = 40
FEATHER = 0.25
_CLAHE_CLIP = 2.0
_CLAHE_TILES = (4, 4)
_UNSHARP_AMOUNT = 0.8
_TARGET_LUMA = 0.55  # skin a little above mid-grey
_GAMMA_PULL = 0.5    # how far toward the target (1 = all the way)
_GAMMA_LIMITS = (0.6, 1.7)

_local = threading.local()  # a CascadeClassifier must not run detectMultiScale in two threads at once


def _cv2() -> Any:
    import cv2  # lazy: ~0.15 s, and only briefs that check faces need it

    if not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 dropped them): "
                           "install opencv-python-headless 4.x, as pyproject.toml pins it")
    return cv2


def _classifier() -> Any:
    classifier = getattr(_local, "classifier", None)
    if classifier is None:
        cv2 = _cv2()
        path = Path(cv2.data.haarcascades) / CASCADE_FILE
        classifier = cv2.CascadeClassifier(str(path))
        if classifier.empty():
            raise RuntimeError(f"cannot load the face cascade {path}: reinstall opencv-python-headless 4.x")
        _local.classifier = classifier
    return classifier


def _gray(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.uint8)


def detect_faces(img: Image.Image) -> list[Box]:
    """Frontal faces in `img`, largest first, as boxes in `img`'s pixels (deterministic)."""
    cv2 = _cv2()
    scale = min(1.0, DETECT_SIDE / max(img.width, img.height))
    small = img if scale >= 1.0 else img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                                Image.Resampling.BOX, reducing_gap=2.0)
    # local, not global, equalisation: a face in shadow or dark skin on a bright ground keeps its contrast
    gray = cv2.createCLAHE(clipLimit=_DETECT_CLAHE_CLIP, tileGridSize=_DETECT_CLAHE_TILES).apply(_gray(small))
    side = max(24, round(MIN_FACE_SHARE * min(gray.shape)))
    found = _classifier().detectMultiScale(gray, scaleFactor=_SCALE_STEP, minNeighbors=_MIN_NEIGHBOURS,
                                           minSize=(side, side))
    boxes = []
    for x, y, w, h in np.asarray(found, dtype=np.int64).reshape(-1, 4):
        box = (round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale))
        boxes.append((max(0, box[0]), max(0, box[1]), min(img.width, box[2]), min(img.height, box[3])))
    return sorted(boxes, key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b[0], b[1]))


def _face_pixels(gray: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return gray[y0:y1, x0:x1]


def face_sharpness(gray: np.ndarray, box: Box) -> float:
    """Laplacian variance of the face at `box`, resampled to FACE_ANALYSIS_SIDE px wide."""
    face = _face_pixels(gray, box)
    if face.size == 0:
        return 0.0
    height = max(3, round(FACE_ANALYSIS_SIDE * face.shape[0] / face.shape[1]))
    sized = Image.fromarray(face).resize((FACE_ANALYSIS_SIDE, height), Image.Resampling.BOX if
                                         face.shape[1] >= FACE_ANALYSIS_SIDE else Image.Resampling.BICUBIC)
    return sharpness(np.asarray(sized, dtype=np.float32))


def face_luma(gray: np.ndarray, box: Box) -> float:
    """Mean grey level of the face's central part (0..255)."""
    x0, y0, x1, y1 = box
    inset_x, inset_y = (1 - _SKIN_SHARE) / 2 * (x1 - x0), (1 - _SKIN_SHARE) / 2 * (y1 - y0)
    skin = _face_pixels(gray, (round(x0 + inset_x), round(y0 + inset_y), round(x1 - inset_x), round(y1 - inset_y)))
    return float(skin.mean()) if skin.size else 0.0


def measure_faces(img: Image.Image, boxes: Sequence[Box] | None = None) -> dict[str, Any]:
    """The faces gate's columns: face_count, face_boxes, face_sharpness (least sharp face) and face_luma
    (worst exposed face); the last two are None without a face, which passes their gates."""
    boxes = detect_faces(img) if boxes is None else list(boxes)
    gray = _gray(img)
    sharpnesses = [face_sharpness(gray, box) for box in boxes]
    lumas = [face_luma(gray, box) for box in boxes]
    return {"face_count": len(boxes), "face_boxes": [list(box) for box in boxes],
            "face_sharpness": min(sharpnesses) if sharpnesses else None,
            "face_luma": max(lumas, key=lambda value: abs(value - 127.5)) if lumas else None}


# --------------------------------------------------------------------------- the remedy


def feather_region(box: Box, width: int, height: int) -> Box:
    """The region an enhancement of the face at `box` may change: the box grown by FEATHER x its size."""
    x0, y0, x1, y1 = box
    pad_x, pad_y = round(FEATHER * (x1 - x0)), round(FEATHER * (y1 - y0))
    return max(0, x0 - pad_x), max(0, y0 - pad_y), min(width, x1 + pad_x), min(height, y1 + pad_y)


def _feather_mask(box: Box, region: Box) -> np.ndarray:
    """1 inside `box`, easing to 0 at the edge of `region` (smoothstep), shape of the region."""
    def ramp(start: int, end: int, inner_start: int, inner_end: int) -> np.ndarray:
        coords = np.arange(start, end, dtype=np.float32) + 0.5
        rise = np.clip((coords - start) / max(inner_start - start, 1), 0, 1)
        fall = np.clip((end - coords) / max(end - inner_end, 1), 0, 1)
        t = np.where(coords < inner_start, rise, np.where(coords >= inner_end, fall, 1.0))
        return t * t * (3 - 2 * t)

    rows = ramp(region[1], region[3], box[1], box[3])
    cols = ramp(region[0], region[2], box[0], box[2])
    return rows[:, None] * cols[None, :]


def _exposure_gamma(mean: float) -> float:
    """Exponent moving a face's mean lightness (0..1) part of the way toward _TARGET_LUMA."""
    mean = min(max(mean, 0.02), 0.98)
    gamma = (np.log(_TARGET_LUMA) / np.log(mean)) ** _GAMMA_PULL
    return float(min(max(gamma, _GAMMA_LIMITS[0]), _GAMMA_LIMITS[1]))


def _enhanced_region(cv2: Any, rgb: np.ndarray, box_in_region: Box) -> np.ndarray:
    """The region with its lightness evened out (CLAHE), pulled toward a good skin exposure, and sharpened."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lightness = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_TILES).apply(lab[..., 0])
    face = _face_pixels(lightness, box_in_region)
    gamma = _exposure_gamma(float(face.mean()) / 255.0 if face.size else 0.5)
    level = (lightness.astype(np.float32) / 255.0) ** gamma * 255.0
    sigma = max(1.0, (box_in_region[2] - box_in_region[0]) / 96)
    blurred = cv2.GaussianBlur(level, (0, 0), sigma)
    lab[..., 0] = np.clip(level + _UNSHARP_AMOUNT * (level - blurred), 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), dtype=np.float32)


def enhance_faces(img: Image.Image, boxes: Sequence[Box] | None = None, strength: float = 1.0) -> Image.Image:
    """Each face's local contrast evened out (CLAHE on lightness), its exposure pulled toward skin
    mid-tones and its detail sharpened, blended in through a feathered mask.

    Bounded: a pixel moves by at most `strength` x MAX_DELTA grey levels per channel, the change fades
    to nothing over FEATHER x the face size around each box, and pixels beyond that are unchanged.
    `boxes` default to the faces `detect_faces` finds; without a face the image comes back as it was.
    """
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    rgb_img = img if img.mode == "RGB" else img.convert("RGB")
    boxes = detect_faces(rgb_img) if boxes is None else list(boxes)
    if not boxes:
        return rgb_img.copy()
    cv2 = _cv2()
    pixels = np.array(rgb_img, dtype=np.uint8)
    limit = strength * MAX_DELTA
    for box in boxes:
        region = feather_region(box, rgb_img.width, rgb_img.height)
        rx0, ry0, rx1, ry1 = region
        original = pixels[ry0:ry1, rx0:rx1]
        inner = (box[0] - rx0, box[1] - ry0, box[2] - rx0, box[3] - ry0)
        change = np.clip(_enhanced_region(cv2, np.ascontiguousarray(original), inner) - original, -limit, limit)
        blended = original + change * _feather_mask(box, region)[..., None]
        pixels[ry0:ry1, rx0:rx1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")
