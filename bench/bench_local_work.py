"""Local pixel work per master: ours against a straightforward implementation of seed 000's snippets.

Per master (a local render, 2048 px by default) both sides make the same outputs:

  gate        ours: measure_image (decode, sharpness, blockiness, clipping, noise, dominant colours,
              CIEDE2000 to the palette, pHash).  seed: resolution check + magic bytes +
              validate_colors (PIL getcolors, the 5 most frequent colours within RGB distance 50 of the
              palette); getcolors(maxcolors=1000) returns None on any render, so it is given room.
  size set    the `social` set (9 targets, JPEG within their byte budgets) and a 1920x600 WebP hero under
  + hero      400 KB.  ours: render_variants (saliency crop, BICUBIC within 2x else Lanczos, XMP, bisection to
              the budget) with the hero as one more target.  seed: per target, open the file, centre-crop to the aspect and
              LANCZOS-resize (ImageOps.fit: the seed's thumbnail() gives the wrong size), then
              optimize_for_web's loop (quality 95, -5 until it fits); the hero the same way as WebP.
  srcset      a WebP srcset.  ours: the responsive policy inside the same render_variants call
              (render_responsive: widths chosen by bytes, 320-1920 px, 20 KB steps); its time is
              measured inside that call.  seed: generate_srcset (320/640/1024/1920 w, q85).

Ours makes everything after the gate in one render_variants call, as tasks/publish.py does, so the
master is decoded and its saliency map computed once for the size set, the hero and the srcset; the
seed's snippets open the file for every target.

Both sides run in one process, interleaved master by master (ours, seed, ours, seed, ...), so load
from other work on the machine hits both alike; the table reports medians and ours/seed ratios.

    .venv/bin/python bench/bench_local_work.py            # quick: 3 masters (one per look) x 1 repeat
    .venv/bin/python bench/bench_local_work.py --full     # 3 masters x 3 repeats
    .venv/bin/python bench/bench_local_work.py --profile  # also cProfile one master of ours
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageOps  # noqa: E402

PALETTE = ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50"]
SPECS = [  # three looks: a plain product shot, a grainy neon scene, a flat minimal one
    {"subject": "a ceramic coffee mug with tulips", "style": "product", "lighting": "product",
     "composition": "rule_of_thirds", "mood": "fresh spring morning"},
    {"subject": "a neon motorcycle in a rainy street", "style": "cyberpunk", "lighting": "moody",
     "composition": "leading_lines", "mood": "electric"},
    {"subject": "a glass perfume bottle", "style": "minimalist", "lighting": "studio_high_key",
     "composition": "centered", "mood": "calm"},
]
HERO = (1920, 600, 400_000)
SRCSET_WIDTHS = [320, 640, 1024, 1920]


# --------------------------------------------------------------------------- seed 000, straightforwardly

def _hex_to_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _min_color_distance(colour, brand) -> float:
    return min(sum((a - b) ** 2 for a, b in zip(colour[:3], other)) ** 0.5 for other in brand)


def seed_validate_colors(image_path, palette) -> bool:
    img = Image.open(image_path)
    colors = img.getcolors(maxcolors=img.width * img.height)  # the seed's 1000 gives None on a render
    dominant = [c[1] for c in sorted(colors, reverse=True)[:5]]
    brand_colors = [_hex_to_rgb(c) for c in palette]
    matches = sum(1 for c in dominant if _min_color_distance(c, brand_colors) < 50)
    return matches >= 2


def seed_gate(image_path, palette) -> dict:
    with open(image_path, "rb") as fh:
        head = fh.read(8)
    img = Image.open(image_path)
    return {"resolution": img.width >= 1024 and img.height >= 1024,
            "format": head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"),
            "brand": seed_validate_colors(image_path, palette)}


def seed_optimize_for_web(img, output, fmt, max_bytes) -> int:
    quality = 95
    while True:
        img.save(output, fmt, quality=quality, optimize=True)
        if os.path.getsize(output) <= max_bytes or quality < 50:
            break
        quality -= 5
    return os.path.getsize(output)


def seed_size_set(image_path, targets, work: Path) -> int:
    total = 0
    for target in targets:
        img = Image.open(image_path).convert("RGB")
        fitted = ImageOps.fit(img, (target.width, target.height), Image.LANCZOS)
        total += seed_optimize_for_web(fitted, work / f"seed-{target.name}.jpg", target.format,
                                       target.max_bytes or 10**9)
    return total


def seed_generate_srcset(image_path, work: Path, sizes=SRCSET_WIDTHS) -> int:
    img = Image.open(image_path)
    total = 0
    for size in sizes:
        aspect = img.height / img.width
        resized = img.resize((size, int(size * aspect)), Image.LANCZOS)
        output = work / f"seed-{size}w.webp"
        resized.save(output, quality=85, optimize=True)
        total += os.path.getsize(output)
    return total


def seed_hero(image_path, work: Path) -> int:
    hero = ImageOps.fit(Image.open(image_path).convert("RGB"), HERO[:2], Image.LANCZOS)
    return seed_optimize_for_web(hero, work / "seed-hero.webp", "WEBP", HERO[2])


# --------------------------------------------------------------------------- ours

def ours_gate(image_path, palette):
    from imagegen.imaging.metrics import measure_image

    return measure_image(image_path, "bench", palette)


# The web outputs as a brief asks for them: the hero is one more target, the srcset the responsive
# policy (WebP only here, 320-1920 px, 20 KB steps, at most 8 files).
HERO_TARGET = {"name": "hero", "platform": "web", "width": HERO[0], "height": HERO[1], "format": "WEBP",
               "max_bytes": HERO[2]}
SRCSET_POLICY = {"formats": ["WEBP"], "min_width": SRCSET_WIDTHS[0], "max_width": SRCSET_WIDTHS[-1],
                 "bytes_step": 20_000, "max_images": 8}


def ours_publish(ref, targets, work: Path, xmp: bytes) -> tuple[int, float]:
    """Size set, hero and srcset in one render_variants call, as tasks/publish.py makes them: the
    master is decoded and its saliency computed once. Returns (bytes, seconds in the srcset)."""
    from imagegen import publishing
    from imagegen.sizes import Target

    srcset_seconds = 0.0
    render_responsive = publishing.render_responsive

    def timed_responsive(*args, **kwargs):
        nonlocal srcset_seconds
        started = time.perf_counter()
        try:
            return render_responsive(*args, **kwargs)
        finally:
            srcset_seconds += time.perf_counter() - started

    publishing.render_responsive = timed_responsive
    try:
        rendered = publishing.render_variants(ref, [*targets, Target(**HERO_TARGET)], xmp=xmp, work_dir=work,
                                              include_master=False,
                                              options=publishing.WebOptions(responsive=SRCSET_POLICY))
    finally:
        publishing.render_responsive = render_responsive
    return sum(v.bytes for v in rendered), srcset_seconds


# --------------------------------------------------------------------------- harness

def make_masters(count: int, side: int, folder: Path):
    from imagegen.models import GenerationRequest
    from imagegen.providers.local import LocalGenerator

    generator = LocalGenerator(master_size=side)
    masters = []
    for i in range(count):
        spec = {**SPECS[i % len(SPECS)], "palette": PALETTE}
        request = GenerationRequest(prompt=spec["subject"], width=side, height=side, seed=1000 + i, spec=spec)
        masters.append(generator.generate(request, folder).image)
    return masters


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


STAGES = ("gate", "size set + hero", "srcset")


def run_pair(ref, targets, xmp, work: Path) -> dict[str, dict[str, float]]:
    gate_seconds = timed(ours_gate, ref.path, PALETTE)[0]
    publish_seconds, (_, srcset_seconds) = timed(ours_publish, ref, targets, work / "ours", xmp)
    ours = {"gate": gate_seconds,
            "size set + hero": publish_seconds - srcset_seconds,
            "srcset": srcset_seconds}
    seed = {"gate": timed(seed_gate, ref.path, PALETTE)[0],
            "size set + hero": timed(seed_size_set, ref.path, targets, work)[0] + timed(seed_hero, ref.path, work)[0],
            "srcset": timed(seed_generate_srcset, ref.path, work)[0]}
    return {"ours": ours, "seed": seed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 masters (one per look) x 1 repeat (default)")
    mode.add_argument("--full", action="store_true", help="3 masters x 3 repeats")
    parser.add_argument("--masters", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--size", type=int, default=2048, help="master side in px (default 2048, the local default)")
    parser.add_argument("--profile", action="store_true", help="cProfile ours on the first master, top 25")
    args = parser.parse_args(argv)
    masters_n = args.masters or 3
    repeats = args.repeats or (3 if args.full else 1)

    from imagegen.imaging.encode import build_xmp
    from imagegen.sizes import BUILTIN_SIZE_SETS

    targets = BUILTIN_SIZE_SETS["social"]
    xmp = build_xmp(prompt="benchmark", model="local-procedural-v1", provider="local", seed=1)
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        (work / "ours").mkdir()
        masters = make_masters(masters_n, args.size, work / "masters")
        run_pair(masters[0], targets[:1], xmp, work)  # warm-up: imports, codec init (not timed)
        samples: dict[str, dict[str, list[float]]] = {"ours": {}, "seed": {}}
        for _ in range(repeats):
            for ref in masters:
                result = run_pair(ref, targets, xmp, work)
                for side in result:
                    for stage, seconds in result[side].items():
                        samples[side].setdefault(stage, []).append(seconds)
        print(f"# local work per master: {masters_n} master(s) of {args.size}x{args.size} x {repeats} repeat(s), "
              f"{len(targets)} social targets + WebP srcset + hero; medians, seconds")
        print("| stage | ours (s) | seed 000 (s) | ours/seed |")
        print("|---|---:|---:|---:|")
        totals = {"ours": 0.0, "seed": 0.0}
        for stage in STAGES:
            o, s = (statistics.median(samples[side][stage]) for side in ("ours", "seed"))
            totals["ours"] += o
            totals["seed"] += s
            print(f"| {stage} | {o:.3f} | {s:.3f} | {o / s:.2f}x |")
        print(f"| **total** | **{totals['ours']:.3f}** | **{totals['seed']:.3f}** | "
              f"**{totals['ours'] / totals['seed']:.2f}x** (target <= 0.50x) |")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            ours_gate(masters[0].path, PALETTE)
            ours_publish(masters[0], targets, work / "ours", xmp)
            profiler.disable()
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(25)
            print("\n# cProfile of ours, one master, by own time\n```")
            print("\n".join(line for line in buffer.getvalue().splitlines()[4:] if line.strip()))
            print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
