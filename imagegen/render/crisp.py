"""The crisp parts of the picture, drawn at full resolution: the hero subject (sphere, cube, bottle,
watch, slab; a face: imagegen.render.face) on its podium, the props, and the set pieces of a
composition, style or lighting (leading lines, frame, neon grid, light beam)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from imagegen.render.colour import Colour, contrasting, luma, mix, with_luma
from imagegen.render.face import paint_face
from imagegen.render.primitives import Prim, aa_mask, box_px, capsule, linear_fill, paint, rotated_ellipse
from imagegen.render.scene import Box, Scene, group_box


def paint_podium(canvas: Image.Image, scene: Scene) -> None:
    if scene.podium_box is None:
        return
    x0, y0, x1, y1 = box_px(scene, scene.podium_box)
    cap = (x1 - x0) * 0.26          # height of the elliptical top
    top_c, bottom_c = y0 + cap / 2, y1 - cap / 2
    body = [Prim("rrect", (x0, top_c, x1, bottom_c)), Prim("ellipse", (x0, bottom_c - cap / 2, x1, y1))]
    paint(canvas, body, "cylinder", scene, base=scene.podium_rgb)
    top = with_luma(scene.podium_rgb, min(0.93, luma(scene.podium_rgb) + 0.12))
    paint(canvas, [Prim("ellipse", (x0, y0, x1, y0 + cap))], top, scene)
    hx0, _, hx1, _ = box_px(scene, scene.hero_box)
    inset = (hx1 - hx0) * 0.12
    contact = with_luma(scene.podium_rgb, luma(scene.podium_rgb) * 0.55)
    paint(canvas, [Prim("ellipse", (hx0 + inset, top_c - cap * 0.12, hx1 - inset, top_c + cap * 0.16))],
          contact, scene, opacity=0.45)


def paint_hero(canvas: Image.Image, scene: Scene) -> None:
    painter = {"sphere": _hero_sphere, "cube": _hero_cube, "bottle": _hero_bottle,
               "watch": _hero_watch, "slab": _hero_slab, "face": paint_face}[scene.hero_kind]
    painter(canvas, scene, box_px(scene, scene.hero_box))


def _highlight(scene: Scene, base: Colour, amount: float = 0.7) -> Colour:
    return mix(base, np.ones(3, np.float32), amount)


def _hero_sphere(canvas: Image.Image, scene: Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    r = (x1 - x0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    paint(canvas, [Prim("ellipse", box)], "sphere", scene)
    lx, ly = scene.light_dir
    hx, hy = cx + lx * r * 0.5, cy + ly * r * 0.5
    paint(canvas, [Prim("polygon", rotated_ellipse(hx, hy, r * 0.2, r * 0.1, math.atan2(ly, lx) + math.pi / 2))],
          _highlight(scene, scene.hero_rgb, 0.8), scene, opacity=0.75)


def _hero_cube(canvas: Image.Image, scene: Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    s = y1 - y0
    cx = (x0 + x1) / 2
    top = (cx, y0, x1, y0 + s / 4, cx, y0 + s / 2, x0, y0 + s / 4)
    left = (x0, y0 + s / 4, cx, y0 + s / 2, cx, y1, x0, y1 - s / 4)
    right = (cx, y0 + s / 2, x1, y0 + s / 4, x1, y1 - s / 4, cx, y1)
    amb = scene.light.ambient
    lit_right = scene.light_dir[0] > 0
    lit = right if lit_right else left
    hexagon = (cx, y0, x1, y0 + s / 4, x1, y1 - s / 4, cx, y1, x0, y1 - s / 4, x0, y0 + s / 4)
    lit_gain, dark_gain = amb + (1 - amb) * 0.8, amb
    # The dark silhouette first, so anti-aliased face seams never show the background through.
    paint(canvas, [Prim("polygon", hexagon)], scene.hero_rgb * dark_gain, scene)
    paint(canvas, [Prim("polygon", lit)], scene.hero_rgb * lit_gain, scene)
    paint(canvas, [Prim("polygon", top)], _highlight(scene, scene.hero_rgb, 0.25), scene)
    # A band wrapped round both side faces (a gift-box ribbon), shaded like the face it is on.
    band = scene.accents[0]
    t0, t1 = 0.42, 0.6
    for face_x, gain in ((x0, lit_gain if not lit_right else dark_gain), (x1, lit_gain if lit_right else dark_gain)):
        outer_top, inner_top = y0 + s / 4, y0 + s / 2
        h = s / 2
        quad = (face_x, outer_top + t0 * h, cx, inner_top + t0 * h, cx, inner_top + t1 * h, face_x, outer_top + t1 * h)
        paint(canvas, [Prim("polygon", quad)], band * gain, scene)
    edge = _highlight(scene, scene.hero_rgb, 0.75)
    paint(canvas, [Prim("line", (x0, y0 + s / 4, cx, y0 + s / 2, x1, y0 + s / 4), radius=max(1.0, s * 0.008))],
          edge, scene, opacity=0.8)


def _hero_bottle(canvas: Image.Image, scene: Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    shoulder = y0 + h * 0.3
    body = [Prim("rrect", (x0, shoulder, x1, y0 + h * 0.62), radius=w * 0.42),
            Prim("rrect", (x0, y0 + h * 0.45, x1, y1), radius=w * 0.12)]
    neck_w = w * 0.36
    paint(canvas, [Prim("rrect", (cx - neck_w / 2, y0 + h * 0.1, cx + neck_w / 2, shoulder + w * 0.2))],
          "cylinder", scene)
    paint(canvas, body, "cylinder", scene)
    cap_w = w * 0.46
    paint(canvas, [Prim("rrect", (cx - cap_w / 2, y0, cx + cap_w / 2, y0 + h * 0.13), radius=w * 0.05)],
          "cylinder", scene, base=scene.accents[-1] if len(scene.accents) > 1 else scene.podium_rgb)
    label = scene.accents[0]
    paint(canvas, [Prim("rrect", (x0, y0 + h * 0.55, x1, y0 + h * 0.8))], "cylinder", scene, base=label)
    side = 1 if scene.light_dir[0] > 0 else -1
    sx = cx + side * w * 0.28
    glint = Prim("rrect", (sx - w * 0.04, shoulder + w * 0.25, sx + w * 0.04, y1 - h * 0.06), radius=w * 0.04)
    paint(canvas, [glint], np.ones(3, np.float32) * 0.96, scene, opacity=0.45)


def _hero_watch(canvas: Image.Image, scene: Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    r = (y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if scene.with_strap:
        strap = with_luma(scene.hero_rgb, luma(scene.hero_rgb) * 0.6)
        band = Prim("rrect", (cx - r * 0.5, cy - r * 1.55, cx + r * 0.5, cy + r * 1.55), radius=r * 0.12)
        paint(canvas, [band], "cylinder", scene, base=strap)
    paint(canvas, [Prim("ellipse", (cx - r, cy - r, cx + r, cy + r))], "sphere", scene)
    face = with_luma(scene.accents[-1], 0.9 if luma(scene.hero_rgb) < 0.6 else 0.2)
    rf = r * 0.8
    paint(canvas, [Prim("ellipse", (cx - rf, cy - rf, cx + rf, cy + rf))], "panel", scene, base=face)
    ink = contrasting([scene.hero_rgb, scene.podium_rgb, *scene.accents], luma(face))

    def spoke(angle: float, start: float, end: float, width: float) -> Prim:
        ca, sa = math.cos(angle), math.sin(angle)
        return Prim("line", (cx + start * ca, cy + start * sa, cx + end * ca, cy + end * sa), radius=width)

    ticks = [spoke(k * math.pi / 6, rf * (0.78 if k % 3 else 0.68), rf * 0.9, max(1.0, r * 0.035)) for k in range(12)]
    ticks.append(spoke(scene.hero_params[0] * 2 * math.pi, 0.0, rf * 0.5, r * 0.06))   # hour hand
    ticks.append(spoke(scene.hero_params[1] * 2 * math.pi, 0.0, rf * 0.78, r * 0.04))  # minute hand
    ticks.append(Prim("ellipse", (cx - r * 0.07, cy - r * 0.07, cx + r * 0.07, cy + r * 0.07)))
    paint(canvas, ticks, ink, scene)


def _hero_slab(canvas: Image.Image, scene: Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    body = with_luma(scene.hero_rgb, min(luma(scene.hero_rgb), 0.3))
    paint(canvas, [Prim("rrect", box, radius=w * 0.14)], "panel", scene, base=body)
    inset = w * 0.06
    screen = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
    c0 = scene.accents[0]
    c1 = scene.hero_rgb if len(scene.accents) < 2 else scene.accents[1]
    made = aa_mask([Prim("rrect", screen, radius=w * 0.09)], canvas.width, canvas.height)
    if made is not None:
        mask, origin = made
        fill = linear_fill(c0, c1, mask.size, scene.gradient_angle)
        canvas.paste(fill, origin, mask)
    cam = w * 0.035
    cx = (x0 + x1) / 2
    cam_y = y0 + inset * 1.6
    paint(canvas, [Prim("ellipse", (cx - cam, cam_y - cam, cx + cam, cam_y + cam))], body * 0.5, scene)
    # A glass reflection: one crisp diagonal edge across the screen.
    sx0, sy0, sx1, sy1 = screen
    glare = (sx0, sy0, sx0 + (sx1 - sx0) * 0.75, sy0, sx0, sy0 + (sy1 - sy0) * 0.45)
    paint(canvas, [Prim("polygon", glare)], np.ones(3, np.float32), scene, opacity=0.14)


def paint_leading_lines(canvas: Image.Image, scene: Scene) -> None:
    """Wedges and lines from the edges converging on the hero (roads, fences, light rays)."""
    x0, y0, x1, y1 = box_px(scene, scene.hero_box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = math.hypot(scene.width, scene.height)
    wedges, lines = [], []
    base = scene.line_targets[0][0]
    for k, (_, width, kind) in enumerate(scene.line_targets[:5]):
        angle = base + k * 2 * math.pi / 5 + 0.25 * (width - 1)
        ex, ey = cx + reach * math.cos(angle), cy + reach * math.sin(angle)
        if kind < 0.4:
            half = scene.short * 0.2 * width  # half the wedge's width where it leaves the frame
            nx, ny = -math.sin(angle) * half, math.cos(angle) * half
            wedges.append(Prim("polygon", (cx, cy, ex + nx, ey + ny, ex - nx, ey - ny)))
        else:
            lines.append(Prim("line", (cx, cy, ex, ey), radius=max(1.5, scene.short * 0.006 * width)))
    colour = scene.line_rgb
    if wedges:
        paint(canvas, wedges, mix(colour, scene.bg[0], 0.55), scene, opacity=0.5)
    if lines:
        paint(canvas, lines, colour, scene, opacity=0.85)


def paint_frame(canvas: Image.Image, scene: Scene) -> None:
    """A door/window frame around the hero group: a panel behind it and a crisp border."""
    gx0, gy0, gx1, gy1 = box_px(scene, group_box(scene))
    pad = scene.short * 0.09
    inner = (max(0.0, gx0 - pad), max(0.0, gy0 - pad * 1.3),
             min(scene.width, gx1 + pad), min(scene.height, gy1 + pad * 0.6))
    thick = scene.short * 0.045
    outer = (inner[0] - thick, inner[1] - thick, inner[2] + thick, inner[3] + thick)
    radius = (inner[2] - inner[0]) / 2 if scene.frame_arch else scene.short * 0.01
    corners = (True, True, False, False) if scene.frame_arch else None
    panel = with_luma(scene.bg[0], min(0.92, scene.bg_luma + 0.1) if scene.bg_luma < 0.8 else scene.bg_luma - 0.08)
    paint(canvas, [Prim("rrect", inner, radius=radius, corners=corners)], panel, scene, opacity=0.85)
    ring = [Prim("rrect", outer, radius=radius + thick, corners=corners),
            Prim("rrect", inner, radius=radius, corners=corners, erase=True)]
    paint(canvas, ring, "panel", scene, base=scene.line_rgb)


def paint_props(canvas: Image.Image, scene: Scene) -> None:
    for prop in scene.props:
        x, y, r = scene.px(prop.x), scene.px(prop.y), scene.px(prop.size)
        if prop.kind == "orb":
            paint(canvas, [Prim("ellipse", (x - r, y - r, x + r, y + r))], "sphere", scene, base=prop.colour)
        elif prop.kind == "ring":
            ring = [Prim("ellipse", (x - r, y - r, x + r, y + r)),
                    Prim("ellipse", (x - r * 0.62, y - r * 0.62, x + r * 0.62, y + r * 0.62), erase=True)]
            paint(canvas, ring, "panel", scene, base=prop.colour)
        elif prop.kind == "pill":
            paint(canvas, [Prim("polygon", capsule(x, y, r * 1.6, r * 0.42, prop.angle))], "cylinder", scene,
                  base=prop.colour)
        else:  # a small grid of dots, the flat graphic accent of a lot of marketing layouts
            dot, step = r * 0.13, r * 0.55
            dots = [Prim("ellipse", (x + i * step - dot, y + j * step - dot, x + i * step + dot, y + j * step + dot))
                    for i in (-1.5, -0.5, 0.5, 1.5) for j in (-1, 0, 1)]
            paint(canvas, dots, prop.colour, scene)


def paint_neon_grid(canvas: Image.Image, scene: Scene) -> None:
    """Synthwave floor: lines fanning from a vanishing point plus rungs closing in on the horizon."""
    horizon = scene.height * 0.66
    vx = scene.width * (0.5 + 0.2 * (scene.hero_params[2] - 0.5))
    lines = []
    for k in range(-8, 9):
        lines.append(Prim("line", (vx, horizon, vx + k * scene.width * 0.18, scene.height * 1.02),
                          radius=max(1.0, scene.short * 0.003)))
    for k in range(1, 8):
        y = horizon + (scene.height - horizon) * (k / 7) ** 2
        lines.append(Prim("line", (0, y, scene.width, y), radius=max(1.0, scene.short * 0.003)))
    paint(canvas, lines, scene.accents[0], scene, opacity=0.7)


def paint_moody_beam(canvas: Image.Image, scene: Scene) -> None:
    """The hard key light made visible: a crisp-edged beam from above falling on the hero."""
    x0, y0, x1, y1 = box_px(scene, scene.hero_box)
    cx, spread = (x0 + x1) / 2, (x1 - x0) * 0.9
    top_x = cx + scene.light_dir[0] * scene.short * 0.4
    beam = (top_x - scene.short * 0.04, -2.0, top_x + scene.short * 0.04, -2.0, cx + spread, y1, cx - spread, y1)
    paint(canvas, [Prim("polygon", beam)], np.array([1.0, 0.96, 0.88], np.float32), scene, opacity=0.12)
