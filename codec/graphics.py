"""Procedural graphics clips for training: colour bars, text and sharp shapes.

The training videos are camera footage; nothing in them looks like a test
card, a title or a screen capture (flat colours, hard edges, small text),
and a tokenizer fine-tuned on them alone loses such content (the joint
fine-tune of the eleventh session: -1.2 dB on the ChID card). These clips
fill that gap. Each is a random still layout (a background of colour bars, a
gradient, a grid or a flat colour, under shapes and lines of text) that
either stays still, pans slowly, or has one element moving over it, the
motion of idents, tickers and slides.
"""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MOTIONS = ("still", "pan", "ticker")


def _colour(rng: np.random.Generator, saturated: bool = True) -> tuple[int, int, int]:
    if saturated:  # the corners of the RGB cube and their mixes, as bars and logos use
        return tuple(int(v) for v in rng.choice([0, 64, 128, 191, 255], size=3))
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    kind = rng.integers(4)
    if kind == 0:  # vertical bars, full or 75% amplitude, as on a test card
        level = int(rng.choice([191, 255]))
        bars = [(1, 1, 1), (1, 1, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1), (1, 0, 0), (0, 0, 1), (0, 0, 0)]
        cols = np.repeat(np.array(bars, np.uint8) * level, -(-w // len(bars)), axis=0)[:w]
        return Image.fromarray(np.ascontiguousarray(np.broadcast_to(cols, (h, w, 3))))
    if kind == 1:  # a linear gradient between two colours
        a, b = np.array(_colour(rng, False), np.float32), np.array(_colour(rng, False), np.float32)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)[:, None]
        ramp = (a + (b - a) * t).round().astype(np.uint8)
        img = np.broadcast_to(ramp[None], (h, w, 3)) if len(ramp) == w else np.broadcast_to(ramp[:, None], (h, w, 3))
        return Image.fromarray(np.ascontiguousarray(img))
    img = Image.new("RGB", (w, h), _colour(rng))
    if kind == 2:  # a grid of thin lines
        draw, step, fill = ImageDraw.Draw(img), int(rng.integers(8, 48)), _colour(rng)
        for x in range(0, w, step):
            draw.line([(x, 0), (x, h)], fill=fill, width=int(rng.integers(1, 3)))
        for y in range(0, h, step):
            draw.line([(0, y), (w, y)], fill=fill, width=int(rng.integers(1, 3)))
    return img


def _text(rng: np.random.Generator, size: int) -> tuple[str, ImageFont.FreeTypeFont]:
    letters = string.ascii_letters + string.digits + " :-./"
    text = "".join(rng.choice(list(letters), size=int(rng.integers(3, 24))))
    return text, ImageFont.load_default(size=size)


def _decorate(rng: np.random.Generator, img: Image.Image) -> None:
    draw, (w, h) = ImageDraw.Draw(img), img.size
    for _ in range(int(rng.integers(1, 6))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        box = [x0, y0, x0 + int(rng.integers(8, w // 2)), y0 + int(rng.integers(8, h // 2))]
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle(box, fill=_colour(rng))
        elif shape == 1:
            draw.ellipse(box, fill=_colour(rng), outline=_colour(rng), width=int(rng.integers(0, 4)))
        else:
            draw.line(box, fill=_colour(rng), width=int(rng.integers(1, 6)))
    for _ in range(int(rng.integers(1, 5))):
        text, font = _text(rng, int(rng.integers(10, 56)))
        draw.text((int(rng.integers(0, w - 16)), int(rng.integers(0, h - 10))), text, font=font, fill=_colour(rng))


def graphics_clip(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """One clip (frames, height, width, 3) uint8 of procedural graphics."""
    motion = MOTIONS[rng.integers(len(MOTIONS))]
    margin = frames * 2 if motion == "pan" else 0  # at most 2 pixels a frame
    canvas = _background(rng, width + margin, height + margin)
    _decorate(rng, canvas)
    base = np.asarray(canvas)
    if motion == "pan":
        dx, dy = rng.integers(-2, 3, size=2)
        ox, oy = (margin if dx < 0 else 0), (margin if dy < 0 else 0)
        return np.stack([base[oy + dy * t: oy + dy * t + height, ox + dx * t: ox + dx * t + width]
                         for t in range(frames)])
    if motion == "still":
        return np.repeat(base[None], frames, axis=0)
    # ticker: a line of text on a band crossing the frame at a few pixels a frame
    text, font = _text(rng, int(rng.integers(12, 40)))
    band_y, speed, fill, band = int(rng.integers(0, height - 20)), int(rng.integers(1, 6)), _colour(rng), _colour(rng)
    x0 = int(rng.integers(0, width))
    out = []
    for t in range(frames):
        img = Image.fromarray(base.copy())
        draw = ImageDraw.Draw(img)
        draw.rectangle([0, band_y, width, band_y + font.size + 6], fill=band)
        draw.text((x0 - speed * t, band_y + 2), text, font=font, fill=fill)
        out.append(np.asarray(img))
    return np.stack(out)


def graphics_clips(count: int, frames: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """`count` procedural clips (see `graphics_clip`), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [graphics_clip(rng, frames, height, width) for _ in range(count)]
