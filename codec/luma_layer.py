"""The coarse luma layer in pixels: measured by the encoder, added by the decoder.

A `bitstream.luma_layer.LumaLayer` holds, per cell of block x block
displayed pixels and `group` frames, the source's mean luma minus the decoded
frames' mean luma, in steps. The decoder turns the cells into a smooth
correction (bilinear between cell centres, constant over a cell's frames)
and adds it to R, G and B alike: that moves Y' by the correction and leaves
Cb and Cr as they are (Kr + Kg + Kb = 1). Luma here is Kr R + Kg G + Kb B of
the 8-bit RGB frames, with the source's matrix (BT.601 or BT.709).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.bitstream.luma_layer import MAX_VALUE, LumaLayer, layer_shape

from .luma_range import KR_KB, MATRICES

__all__ = ["luma", "cell_means", "measure", "correction", "apply"]

_WEIGHTS = [(KR_KB[m][0], 1 - sum(KR_KB[m]), KR_KB[m][1]) for m in MATRICES]  # header luma_matrix -> Kr, Kg, Kb


def luma(frames: np.ndarray, matrix: int = 0) -> np.ndarray:
    """float32 (n, H, W) luma of uint8 RGB frames (n, H, W, 3)."""
    return frames.astype(np.float32) @ np.asarray(_WEIGHTS[matrix], np.float32)


def cell_means(y: np.ndarray, block: int, group: int) -> np.ndarray:
    """float64 (G, h, w) means of (n, H, W) over cells of `group` frames and
    `block` x `block` pixels (the last row, column and group of cells may be smaller)."""
    n, H, W = y.shape
    G, h, w = layer_shape(n, H, W, block, group)
    s = np.add.reduceat(np.add.reduceat(np.add.reduceat(y.astype(np.float64), np.arange(0, n, group), axis=0),
                                        np.arange(0, H, block), axis=1), np.arange(0, W, block), axis=2)
    count = np.multiply.outer(np.multiply.outer(np.diff(np.minimum(np.arange(G + 1) * group, n)),
                                                np.diff(np.minimum(np.arange(h + 1) * block, H))),
                              np.diff(np.minimum(np.arange(w + 1) * block, W)))
    return s / count


def measure(source: np.ndarray, decoded: np.ndarray, block: int, group: int, step: int) -> LumaLayer:
    """The layer that moves `decoded` towards `source` (their `luma`, (n, H, W),
    the same shape): their cells' mean difference in steps, rounded and clipped."""
    diff = cell_means(source - decoded, block, group)  # the mean of a difference: one pass, not two
    return LumaLayer(block, group, step, np.clip(np.round(diff / step), -MAX_VALUE, MAX_VALUE).astype(np.int8))


def correction(layer: LumaLayer, height: int, width: int) -> np.ndarray:
    """float32 (G, H, W): each group's correction at every pixel, bilinear
    between cell centres (a cell of `block` pixels upsampled by `block`, then cropped)."""
    G, h, w = layer.values.shape
    grid = torch.from_numpy(layer.values.astype(np.float32) * layer.step)[:, None]
    up = F.interpolate(grid, size=(h * layer.block, w * layer.block), mode="bilinear", align_corners=False)
    return up[:, 0, :height, :width].numpy()


def apply(frames: np.ndarray, layer: LumaLayer | None, first: int = 0, upsampled: np.ndarray | None = None
          ) -> np.ndarray:
    """uint8 RGB frames (n, H, W, 3) with the layer's correction added to each
    channel; `first`: the index within the chunk of frames[0]; `upsampled`:
    `correction`'s output if already computed. No layer: the frames as they are."""
    if layer is None:
        return frames
    n, H, W, _ = frames.shape
    up = correction(layer, H, W) if upsampled is None else upsampled
    delta = up[(first + np.arange(n)) // layer.group]
    return np.clip(np.rint(frames.astype(np.float32) + delta[..., None]), 0, 255).astype(np.uint8)
