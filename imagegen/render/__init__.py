"""Offline procedural renderer behind the `local` provider; `renderer.render_local` is the entry point.

A stand-in, not a diffusion model: it turns the structured prompt spec (subject, palette, style,
lighting, composition, mood) and a seed into an abstract product/marketing render that behaves
like a real one for everything downstream: brand colours to find, a crisp hero subject for the
content-aware crop, texture for the sharpness gate, no clipped highlights or crushed shadows, and
a layout that moves with the seed so near-duplicate gates see distinct images.

Speed comes from splitting the picture by frequency. Everything smooth (gradient, soft shapes,
light pools, shadows, vignette) is computed with numpy on a small grid and upscaled; everything
crisp (hero subject, podium, lines, frame) is drawn at full resolution with Pillow on supersampled
masks; film grain is one full-resolution noise layer.

Determinism: one numpy Generator seeded from the seed and a SHA-256 of the canonical spec JSON
(Python's hash() is salted per process). Layout draws come before any draw whose count depends
on the output size, so one spec+seed gives the same layout at every size, adapted to the aspect.
"""
