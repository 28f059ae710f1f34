"""What checking faces costs per master, and how well the detector finds the local renderer's faces.

Prints two tables: milliseconds per step (detect, measure, enhance, a face-keeping crop plan) at two
master sizes, and detection on the renderer's scenes (faces found where the scene planned them, false
faces in scenes without one). Run: .venv/bin/python bench/bench_faces.py [--repeat N]   (~1 min)
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

from imagegen.imaging.crop import plan_crop_keeping, saliency_map
from imagegen.imaging.faces import detect_faces, enhance_faces, measure_faces
from imagegen.render.renderer import describe_scene, render_local

PALETTE = ["#1a1a2e", "#e94560", "#f4f1ea"]
FACE = {"subject": "a woman smiling at the camera", "style": "portrait", "lighting": "portrait", "palette": PALETTE}


def _ms(step, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def timings(repeat: int) -> None:
    print("| master | detect | measure (detect + columns) | enhance | crop plan keeping faces |")
    print("|---|---|---|---|---|")
    for side in (1024, 2048):
        img = render_local(FACE, 1, side, side)
        boxes = detect_faces(img)
        sal = saliency_map(img)
        print(f"| {side} px | {_ms(lambda: detect_faces(img), repeat):.0f} ms "
              f"| {_ms(lambda: measure_faces(img), repeat):.0f} ms "
              f"| {_ms(lambda: enhance_faces(img, boxes), repeat):.0f} ms "
              f"| {_ms(lambda: plan_crop_keeping(sal, side, side, 1080, 1920, boxes), repeat):.1f} ms |")


def detection() -> None:
    found = total = false = plain = 0
    for style, lighting, composition, seed in itertools.product(
            ["portrait", "product", "cyberpunk", "vintage", "minimalist", "landscape"],
            ["portrait", "moody", "natural", "golden"], ["rule_of_thirds", "centered", "frame"], [1, 2]):
        spec = {"subject": "a woman smiling", "style": style, "lighting": lighting, "composition": composition,
                "palette": PALETTE}
        planned = describe_scene(spec, seed, 512, 512)["hero_box"]
        total += 1
        found += any(_iou(box, planned) >= 0.5 for box in detect_faces(render_local(spec, seed, 512, 512)))
    for subject, style, lighting, seed in itertools.product(
            ["a ceramic mug", "a perfume bottle", "a wrist watch", "a phone", "a gift box"],
            ["portrait", "product", "cyberpunk", "vintage"], ["portrait", "moody", "natural"], [1, 2]):
        plain += 1
        false += bool(detect_faces(render_local({"subject": subject, "style": style, "lighting": lighting,
                                                 "palette": PALETTE}, seed, 512, 512)))
    print()
    print("| local renderer scenes | count | result |")
    print("|---|---|---|")
    print(f"| with a face (IoU >= 0.5 with the planned head) | {total} | {found} found ({found / total:.0%}) |")
    print(f"| without a face | {plain} | {false} with a false face ({false / plain:.1%}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="best of N timings")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    timings(args.repeat)
    detection()


if __name__ == "__main__":
    main()
