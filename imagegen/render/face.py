"""The face hero: a stylised frontal head and shoulders (hair, shaded skin, eye sockets, eyes, brows, nose
shadow, mouth) for subjects that name a person, drawn so a frontal-face detector finds it where the plan put it.

The features sit where a frontal-face Haar cascade looks for them (eyes darker than the cheeks below,
a lighter nose bridge between them, a dark mouth), so imagegen.imaging.faces finds the face the scene
planned: the hero box is the head, the ground truth the face tests check the detector against.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imagegen.render.colour import Colour, luma, mix, with_luma
from imagegen.render.primitives import Prim, paint
from imagegen.render.scene import Box, Scene

# Skin and hair tones, picked by the scene's free draws (not by the brand palette: faces are not brand colours).
_SKIN = ((0.94, 0.78, 0.66), (0.88, 0.70, 0.56), (0.76, 0.57, 0.42), (0.60, 0.42, 0.30), (0.45, 0.31, 0.22))
_HAIR = ((0.16, 0.11, 0.08), (0.30, 0.20, 0.12), (0.08, 0.07, 0.07), (0.45, 0.30, 0.16))
_SCLERA = np.array([0.94, 0.93, 0.90], np.float32)
_LIPS = np.array([0.62, 0.26, 0.26], np.float32)


def _tone(table: tuple[tuple[float, float, float], ...], draw: float) -> Colour:
    return np.array(table[min(len(table) - 1, int(draw * len(table)))], np.float32)


def _shade(colour: Colour, factor: float) -> Colour:
    return with_luma(colour, luma(colour) * factor)


def paint_face(canvas: Image.Image, scene: Scene, box: Box) -> None:
    """Head and shoulders with the head filling `box` (pixels)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    skin, hair = _tone(_SKIN, scene.hero_params[3]), _tone(_HAIR, scene.hero_params[4])
    hair = with_luma(hair, min(luma(hair), luma(skin) * 0.45))  # the head's outline: hair darker than skin
    shoulders = mix(scene.hero_rgb, _shade(scene.hero_rgb, 0.7), 0.3)
    paint(canvas, [Prim("rrect", (cx - w * 0.85, y1 - h * 0.02, cx + w * 0.85, y1 + h * 0.7), radius=w * 0.45)],
          "cylinder", scene, base=shoulders)
    paint(canvas, [Prim("rrect", (cx - w * 0.2, cy + h * 0.25, cx + w * 0.2, y1 + h * 0.12), radius=w * 0.08)],
          _shade(skin, 0.82), scene)
    paint(canvas, [Prim("ellipse", (cx - w * 0.58, y0 - h * 0.08, cx + w * 0.58, cy + h * 0.25))], hair, scene)
    paint(canvas, [Prim("ellipse", box)], "panel", scene, base=skin)
    fringe = Prim("polygon", tuple(float(v) for t in np.linspace(np.pi, 2 * np.pi, 24)
                                   for v in (cx + w * 0.52 * np.cos(t), y0 + h * 0.2 + h * 0.255 * np.sin(t))))
    paint(canvas, [fringe], hair, scene)
    eye_y = cy - h * 0.08
    for side in (-1, 1):
        ex = cx + side * w * 0.22
        paint(canvas, [Prim("ellipse", (ex - w * 0.16, eye_y - h * 0.07, ex + w * 0.16, eye_y + h * 0.06))],
              _shade(skin, 0.62), scene)
        paint(canvas, [Prim("ellipse", (ex - w * 0.11, eye_y - h * 0.035, ex + w * 0.11, eye_y + h * 0.035))],
              with_luma(_SCLERA, min(luma(_SCLERA), luma(skin) * 1.4)), scene)
        paint(canvas, [Prim("ellipse", (ex - w * 0.045, eye_y - h * 0.035, ex + w * 0.045, eye_y + h * 0.035))],
              _shade(hair, 0.9), scene)
        paint(canvas, [Prim("line", (ex - w * 0.14 * side, eye_y - h * 0.085, ex + w * 0.13 * side, eye_y - h * 0.1),
                            radius=max(1.0, h * 0.03))], hair, scene)
    paint(canvas, [Prim("polygon", (cx, cy - h * 0.02, cx - w * 0.07, cy + h * 0.14, cx + w * 0.07, cy + h * 0.14))],
          _shade(skin, 0.88), scene)
    paint(canvas, [Prim("ellipse", (cx - w * 0.08, cy + h * 0.12, cx + w * 0.08, cy + h * 0.17))],
          _shade(skin, 0.7), scene)
    paint(canvas, [Prim("ellipse", (cx - w * 0.17, cy + h * 0.24, cx + w * 0.17, cy + h * 0.31))],
          with_luma(_LIPS, min(luma(_LIPS), luma(skin) * 0.6)), scene)
