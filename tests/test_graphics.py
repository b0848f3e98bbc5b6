"""Procedural graphics training clips (codec.graphics)."""

from __future__ import annotations

import numpy as np

from tokcodec.codec.graphics import graphics_clip, graphics_clips


def test_clips_are_reproducible_frames_of_flat_graphics() -> None:
    a, b = graphics_clips(6, 9, 48, 64, seed=3), graphics_clips(6, 9, 48, 64, seed=3)
    assert all(c.shape == (9, 48, 64, 3) and c.dtype == np.uint8 for c in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], graphics_clips(1, 9, 48, 64, seed=4)[0])
    # graphics, not noise: most pixels repeat a neighbour exactly (across a gradient, the one along it)
    for c in a:
        same = max((c[:, :, 1:] == c[:, :, :-1]).all(-1).mean(), (c[:, 1:] == c[:, :-1]).all(-1).mean())
        assert same > 0.5


def test_clips_move_as_stills_pans_or_tickers() -> None:
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(30):
        c = graphics_clip(rng, 5, 40, 56)
        changed = [not np.array_equal(c[t], c[t + 1]) for t in range(4)]
        kinds.add("still" if not any(changed) else "moving")
    assert kinds == {"still", "moving"}
