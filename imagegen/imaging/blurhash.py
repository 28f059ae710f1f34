"""BlurHash placeholders (https://blurha.sh): the short string a page shows blurred while the image loads,
encoded and decoded with numpy."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from imagegen.imaging.codec import flatten_alpha


def blurhash_components(width: int, height: int, detail: int = 4) -> tuple[int, int]:
    """(x, y) components following the aspect: 4x3 for 4:3, 3x4 for portrait, within 1..9."""
    if width >= height:
        x, y = detail, round(detail * height / width)
    else:
        x, y = round(detail * width / height), detail
    return max(1, min(9, x)), max(1, min(9, y))


def blurhash_placeholder(img: Image.Image, components: tuple[int, int] | None = None,
                         max_side: int = 64) -> str:
    """The BlurHash of `img`, computed on a <= `max_side` thumbnail (same hash to within a
    quantisation step, and ~1000x less work than at full size). Alpha is flattened onto white."""
    small = flatten_alpha(img).convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.BOX)
    x, y = components or blurhash_components(img.width, img.height)
    return blurhash_encode(np.asarray(small), x, y)


# BlurHash (https://blurha.sh, woltapp/blurhash), vectorised with numpy. It is small and fully
# specified; the C binding on PyPI (blurhash-python) reads pixels through Image.getdata, which
# Pillow 14 removes. tests/unit/test_webdelivery.py checks these against that binding.
_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SRGB_TO_LINEAR = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                           ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4)


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _unbase83(text: str) -> int:
    value = 0
    for char in text:
        value = value * 83 + _BASE83.index(char)
    return value


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.trunc(np.where(v <= 0.0031308, v * 12.92 * 255 + 0.5, (1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5))


def _basis(components: int, size: int) -> np.ndarray:
    return np.cos(np.pi * np.outer(np.arange(components), np.arange(size)) / size)


def blurhash_encode(rgb: np.ndarray, x_components: int, y_components: int) -> str:
    """BlurHash of an (h, w, 3) uint8 sRGB array with x by y components (each 1..9)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("BlurHash components must be 1..9")
    h, w = rgb.shape[:2]
    linear = _SRGB_TO_LINEAR[rgb[..., :3]]
    factors = np.einsum("jy,ix,yxc->jic", _basis(y_components, h), _basis(x_components, w), linear) / (w * h)
    factors = factors.reshape(-1, 3)
    factors[1:] *= 2.0  # every AC basis function is normalised by 2, the DC one by 1
    dc, ac = factors[0], factors[1:]
    out = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    if len(ac):
        quantised_max = int(max(0, min(82, math.floor(float(np.abs(ac).max()) * 166 - 0.5))))
        max_value = (quantised_max + 1) / 166
    else:
        quantised_max, max_value = 0, 1.0
    out += _base83(quantised_max, 1)
    r, g, b = (int(c) for c in _linear_to_srgb(dc))
    out += _base83((r << 16) + (g << 8) + b, 4)
    quant = np.clip(np.floor(np.sign(ac) * np.sqrt(np.abs(ac / max_value)) * 9 + 9.5), 0, 18).astype(int)
    return out + "".join(_base83(int(q[0] * 361 + q[1] * 19 + q[2]), 2) for q in quant)


def decode_blurhash(hash_: str, width: int, height: int, punch: float = 1.0) -> Image.Image:
    """The placeholder image a page would show for `hash_` (what the JS decoders draw)."""
    if len(hash_) < 6:
        raise ValueError(f"not a BlurHash: {hash_!r}")
    size = _unbase83(hash_[0])
    x_components, y_components = size % 9 + 1, size // 9 + 1
    if len(hash_) != 4 + 2 * x_components * y_components:
        raise ValueError(f"BlurHash {hash_!r} has the wrong length for {x_components}x{y_components}")
    max_value = (_unbase83(hash_[1]) + 1) / 166 * punch
    dc = _unbase83(hash_[2:6])
    colours = [_SRGB_TO_LINEAR[[dc >> 16, (dc >> 8) & 255, dc & 255]]]
    for k in range(1, x_components * y_components):
        v = _unbase83(hash_[4 + 2 * k: 6 + 2 * k])
        q = np.array([v // 361, (v // 19) % 19, v % 19], dtype=np.float64)
        centred = (q - 9) / 9
        colours.append(np.sign(centred) * centred ** 2 * max_value)
    table = np.array(colours).reshape(y_components, x_components, 3)
    linear = np.einsum("jy,ix,jic->yxc", _basis(y_components, height), _basis(x_components, width), table)
    return Image.fromarray(_linear_to_srgb(linear).astype(np.uint8), "RGB")
