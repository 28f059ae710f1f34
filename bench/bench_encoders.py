"""Benchmark: imagegen.imaging.codec and .responsive against the seed's optimize_for_web / generate_srcset.

Run:  python bench/bench_encoders.py  [--quick]

Images: three local-provider renders (imagegen.render.renderer.render_local, long side 2048 px) and one
photo-like noisy gradient. Every number comes from one run on this machine.

1. Byte budget, WebP. Seed: quality 95, 90, ... until the file is under the target (it stops
   below 50 whether or not the target was met). Ours: encode_to_budget, searched over the same
   45..95 range so only the search differs. Columns: time, encodes, bytes, quality, SSIM
   (luminance, 512 px, against the source), and ours/seed ratios.
2. Same budget, each format through encode_to_budget with its default range: what the format
   policy buys at equal bytes.
3. srcset, WebP q85, 320..1920 px. Seed: fixed widths 320/640/1024/1920. Ours:
   responsive_breakpoints at three (bytes_step, max_images) settings: 10 KB/4 (as many files
   as the seed: only the choice of widths differs), 10 KB/8, and Cloudinary's 20 KB/20.
   "expected download" is the mean bytes a browser fetches when the displayed width is uniform
   over 320..1920 px (it takes the narrowest candidate at least that wide); "overhead" is that
   over the ideal (a file at exactly the needed width, interpolated from 13 measured widths).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagegen.imaging.codec import decode, encode_bytes, encode_to_budget, luma_ssim  # noqa: E402
from imagegen.imaging.responsive import resize_to_width, responsive_breakpoints  # noqa: E402
from imagegen.render.renderer import render_local  # noqa: E402

SEED_WIDTHS = [320, 640, 1024, 1920]
BUDGETS_KB = (100, 40)
SRCSET_QUALITY = 85


# --------------------------------------------------------------------------- the seed, as written


def seed_optimize_for_web(img: Image.Image, target_size_kb: float = 100) -> tuple[bytes, int, int]:
    """The seed's loop in memory: (data, quality, encodes). Pillow ignores optimize= for WebP."""
    quality, encodes = 95, 0
    while True:
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=quality, optimize=True)
        encodes += 1
        if len(buf.getvalue()) / 1024 <= target_size_kb or quality < 50:
            return buf.getvalue(), quality, encodes
        quality -= 5


def seed_generate_srcset(img: Image.Image, sizes: list[int] = SEED_WIDTHS) -> list[tuple[int, int]]:
    """The seed's fixed widths, WebP q85: [(width, bytes)]."""
    out = []
    for size in sizes:
        resized = img.resize((size, int(size * img.height / img.width)), Image.LANCZOS)
        buf = io.BytesIO()
        resized.save(buf, "WEBP", quality=SRCSET_QUALITY, optimize=True)
        out.append((size, len(buf.getvalue())))
    return out


# --------------------------------------------------------------------------- inputs


def bench_images(long_side: int) -> dict[str, Image.Image]:
    short = round(long_side * 9 / 16)
    images = {
        "render product 1:1": render_local({"subject": "perfume bottle", "style": "product studio"}, 7,
                                           long_side, long_side),
        "render neon 16:9": render_local({"subject": "watch", "style": "cyberpunk neon"}, 11, long_side, short),
        "render landscape 3:2": render_local({"subject": "phone", "style": "landscape golden hour"}, 3,
                                             long_side, round(long_side * 2 / 3)),
    }
    rng = np.random.default_rng(2026)
    h = round(long_side * 2 / 3)
    y, x = np.mgrid[0:h, 0:long_side].astype(np.float32)
    rgb = np.stack([30 + 190 * x / long_side, 40 + 170 * y / h, 210 - 150 * (x + y) / (long_side + h)], axis=-1)
    rgb += rng.normal(0, 9, rgb.shape).astype(np.float32)  # sensor-like noise: the hard case for encoders
    images["noisy gradient 3:2"] = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    return images


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def ssim_of(source: Image.Image, data: bytes) -> float:
    return luma_ssim(source, decode(data))


# --------------------------------------------------------------------------- tables


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def budget_rows(images: dict[str, Image.Image]) -> list[list[str]]:
    rows = []
    for name, img in images.items():
        for kb in BUDGETS_KB:
            budget = kb * 1024
            (seed_data, seed_q, seed_n), seed_t = timed(lambda: seed_optimize_for_web(img, kb))
            ours, ours_t = timed(lambda: encode_to_budget(img, "WEBP", budget, quality_range=(45, 95)))
            s_ssim, o_ssim = ssim_of(img, seed_data), ssim_of(img, ours.data)
            rows.append([
                name, f"{kb}", f"{seed_t:.2f}", f"{ours_t:.2f}", f"{ours_t / seed_t:.2f}",
                f"{seed_n}", f"{ours.encodes}", f"{ours.encodes / seed_n:.2f}",
                f"{len(seed_data) / 1024:.1f}{'' if len(seed_data) <= budget else '!'}",
                f"{ours.bytes / 1024:.1f}{'' if ours.within_budget else '!'}", f"{ours.bytes / len(seed_data):.2f}",
                f"{seed_q}", f"{ours.quality}", f"{s_ssim:.4f}", f"{o_ssim:.4f}", f"{o_ssim - s_ssim:+.4f}",
            ])
    return rows


def format_rows(images: dict[str, Image.Image], kb: int) -> list[list[str]]:
    rows = []
    for name, img in images.items():
        row = [name]
        for fmt in ("JPEG", "WEBP", "AVIF"):
            result, seconds = timed(lambda: encode_to_budget(img, fmt, kb * 1024, ssim_floor=0.95))
            flag = "" if result.within_budget else "!"
            floor = "*" if result.floor_violated else ""
            row += [f"{result.quality}{flag}", f"{result.bytes / 1024:.1f}", f"{result.ssim:.4f}{floor}",
                    f"{seconds:.2f}"]
        rows.append(row)
    return rows


def _ideal_curve(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    widths = np.linspace(320, 1920, 13).round().astype(int)
    sizes = [len(encode_bytes(resize_to_width(img, int(w)), "WEBP", SRCSET_QUALITY)) for w in widths]
    return widths, np.maximum.accumulate(np.array(sizes, dtype=np.float64))


def _expected_download(candidates: list[tuple[int, int]], needed: np.ndarray) -> float:
    ordered = sorted(candidates)
    chosen = [next((b for w, b in ordered if w >= n), ordered[-1][1]) for n in needed]
    return float(np.mean(chosen))


SRCSET_CONFIGS = ((10_000, 4), (10_000, 8), (20_000, 20))  # (bytes_step, max_images); 20 KB/20 is Cloudinary's default


def srcset_rows(images: dict[str, Image.Image], configs: tuple[tuple[int, int], ...]) -> list[list[str]]:
    rows = []
    needed = np.arange(320, 1921, 10)
    for name, img in images.items():
        seed, seed_t = timed(lambda: seed_generate_srcset(img))
        widths, sizes = _ideal_curve(img)
        ideal = float(np.mean(np.interp(needed, widths, sizes)))
        seed_dl, seed_store = _expected_download(seed, needed), sum(b for _, b in seed)
        for bytes_step, max_images in configs:
            ours, ours_t = timed(lambda: responsive_breakpoints(
                img, "WEBP", min_width=320, max_width=1920, bytes_step=bytes_step, max_images=max_images,
                quality=SRCSET_QUALITY))
            pairs = [(r.width, r.bytes) for r in ours.renditions]
            ours_dl, ours_store = _expected_download(pairs, needed), sum(b for _, b in pairs)
            rows.append([
                name, f"{bytes_step // 1000}K/{max_images}", f"{seed_t:.2f}", f"{ours_t:.2f}", f"{ours_t / seed_t:.2f}",
                f"{len(seed)}", f"{len(pairs)}", f"{ours.encodes}",
                f"{seed_store / 1024:.0f}", f"{ours_store / 1024:.0f}", f"{ours_store / seed_store:.2f}",
                f"{seed_dl / 1024:.1f}", f"{ours_dl / 1024:.1f}", f"{ours_dl / seed_dl:.2f}",
                f"{100 * (seed_dl / ideal - 1):.0f}%", f"{100 * (ours_dl / ideal - 1):.0f}%",
                " ".join(str(w) for w, _ in pairs),
            ])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024 px images instead of 2048 (smoke run)")
    args = parser.parse_args()
    long_side = 1024 if args.quick else 2048

    started = time.perf_counter()
    images = bench_images(long_side)
    print(f"images ({long_side} px long side): " + ", ".join(f"{n} {i.width}x{i.height}" for n, i in images.items()))
    print("\n1. Byte budget, WebP, same 45..95 range (seed: -5 steps from 95; ours: bisection). '!' = over budget")
    print(table(["image", "KB", "seed s", "ours s", "t ratio", "seed enc", "ours enc", "enc ratio",
                 "seed KB", "ours KB", "KB ratio", "seed q", "ours q", "seed SSIM", "ours SSIM", "dSSIM"],
                budget_rows(images)))
    kb = BUDGETS_KB[-1]
    print(f"\n2. Same {kb} KB budget per format (encode_to_budget, default ranges, SSIM floor 0.95; "
          "'*' = floor_violated reported)")
    print(table(["image", "JPEG q", "KB", "SSIM", "s", "WEBP q", "KB", "SSIM", "s", "AVIF q", "KB", "SSIM", "s"],
                format_rows(images, kb)))
    print(f"\n3. srcset, WebP q{SRCSET_QUALITY}, 320..1920 px. seed: 4 fixed widths, 4 encodes; ours: "
          "bytes_step/max_images. KB = all files stored; dl = expected download; over = dl above ideal")
    print(table(["image", "ours cfg", "seed s", "ours s", "t ratio", "seed n", "ours n", "ours enc",
                 "seed KB", "ours KB", "KB ratio", "seed dl KB", "ours dl KB", "dl ratio", "seed over", "ours over",
                 "ours widths"], srcset_rows(images, SRCSET_CONFIGS)))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
