"""Background removal (publish.background) measured against the local renderer's ground truth.

The local renderer knows which pixels its subject (the product and its podium) covers:
`imagegen.render.renderer.subject_mask`. Each scene is rendered at master size, `find_subject` finds
the mask from the pixels alone, and the table gives the intersection over union per scene kind:

  plain      product, minimalist and vintage looks; centred, thirds, golden-ratio and symmetric
             layouts; soft light; the backdrop is a gradient with blurred shapes, light pools and a few
             crisp props (the default studio packshot)
  lines      the leading-lines composition: crisp wedges and lines converge on the product
  frame      the frame composition: a crisp door/window frame and panel around the product
  moody      hard light: a crisp-edged beam falls on the product
  neon       the cyberpunk look: a crisp neon grid floor

Each kind cycles through subjects (bottle, box, watch, phone, sphere ...), five brand palettes, moods,
aspects (1:1, 16:9, 4:5) and seeds. `gate` counts masks the cut-out gate calls implausible (those
masters are quarantined, not published); `IoU>=0.90` counts scenes at the issue's bar.

    .venv/bin/python bench/bench_cutout.py              # quick: 12 scenes per kind at 1024 px
    .venv/bin/python bench/bench_cutout.py --full       # 40 scenes per kind at 2048 px (the local master size)
    .venv/bin/python bench/bench_cutout.py --worst 3    # also list the worst scenes of each kind
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from imagegen.imaging.cutout import find_subject
from imagegen.render.renderer import render_local, subject_mask

SUBJECTS = ("perfume bottle", "gift box", "smart watch", "phone", "orange", "serum jar", "bluetooth speaker",
            "tablet", "wine bottle", "pearl")
PALETTES = (None, ["#1A1A2E", "#E94560", "#F5F5F5"], ["#F6D5E5", "#CDE7F0", "#FFF5D7", "#D8F3DC"],
            ["#0B3D2E", "#C9A227", "#F2EFE6", "#5B7553"], ["#FF6B00", "#000000", "#FFFFFF"])
MOODS = ("", "calm", "bold", "luxury", "warm", "fresh")
KINDS = {
    "plain": dict(styles=("product photography", "minimalist", "vintage"),
                  compositions=("centered", "rule of thirds", "golden ratio", "symmetry"),
                  lightings=("studio softbox", "natural daylight", "golden hour")),
    "lines": dict(styles=("product photography",), compositions=("leading lines",), lightings=("studio softbox",)),
    "frame": dict(styles=("product photography",), compositions=("frame",), lightings=("studio softbox",)),
    "moody": dict(styles=("product photography",), compositions=("centered", "rule of thirds"),
                  lightings=("dramatic",)),
    "neon": dict(styles=("cyberpunk neon",), compositions=("centered", "rule of thirds"), lightings=("",)),
}


def scenes(kind: str, count: int, side: int):
    table = KINDS[kind]
    for i in range(count):
        spec = {"subject": SUBJECTS[i % len(SUBJECTS)], "style": table["styles"][i % len(table["styles"])],
                "lighting": table["lightings"][(i // 3) % len(table["lightings"])],
                "composition": table["compositions"][(i // 2) % len(table["compositions"])],
                "mood": MOODS[i % len(MOODS)]}
        if PALETTES[i % len(PALETTES)]:
            spec["palette"] = PALETTES[i % len(PALETTES)]
        size = ((side, side), (side, side * 9 // 16), (side * 4 // 5, side))[i % 3]
        yield spec, 3000 + i, size


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    a, b = found > 127, truth > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--worst", type=int, default=0)
    args = parser.parse_args()
    count, side = (40, 2048) if args.full else (12, 1024)
    print(f"{count} scenes per kind, long side {side} px\n")
    print("| kind | scenes | min IoU | median | mean | IoU>=0.90 | gate refuses | s per mask (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    worst: dict[str, list] = {}
    for kind in KINDS:
        scores, refused, seconds = [], 0, []
        for spec, seed, (w, h) in scenes(kind, count, side):
            image = render_local(spec, seed, w, h)
            truth = np.asarray(subject_mask(spec, seed, w, h))
            started = time.perf_counter()
            found = find_subject(image)
            seconds.append(time.perf_counter() - started)
            scores.append(iou(np.asarray(found.mask), truth))
            refused += found.problem() is not None
            worst.setdefault(kind, []).append((scores[-1], spec, seed, (w, h), found.problem()))
        print(f"| {kind} | {len(scores)} | {min(scores):.3f} | {statistics.median(scores):.3f} | "
              f"{statistics.mean(scores):.3f} | {sum(s >= 0.9 for s in scores)}/{len(scores)} | "
              f"{refused}/{len(scores)} | {statistics.median(seconds):.2f} |", flush=True)
    for kind, rows in worst.items():
        for score, spec, seed, size, problem in sorted(rows, key=lambda r: r[0])[:args.worst]:
            print(f"  {kind} {score:.3f} seed {seed} {size[0]}x{size[1]} {spec} gate: {problem or 'passes'}")


if __name__ == "__main__":
    main()
