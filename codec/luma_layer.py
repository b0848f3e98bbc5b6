"""The coarse layers in pixels: measured by the encoder, added by the decoder.

A `bitstream.luma_layer.CellLayer` holds, per cell of block x block
displayed pixels and `group` frames, a correction of one plane (Y', Cb or
Cr) in steps: the encoder fits the cells to the source minus the decoded
frames (`measure`). The decoder turns the cells into a smooth correction
(bilinear between cell centres, constant over a cell's frames) and adds it
to the RGB frames through the inverse of the colour matrix: a Y' correction
adds the same to R, G and B (Kr + Kg + Kb = 1) and leaves Cb and Cr as they
are; a Cb or Cr correction leaves Y' as it is. The planes here are those
of the 8-bit RGB frames with the source's matrix (BT.601 or BT.709), full
range: Y' = Kr R + Kg G + Kb B, Cb = (B - Y') / (2 (1 - Kb)),
Cr = (R - Y') / (2 (1 - Kr)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.bitstream.luma_layer import MAX_VALUE, CellLayer, Layers, layer_shape

from .luma_range import KR_KB, MATRICES

__all__ = ["luma", "planes", "group_means", "upsampling", "measure", "fit", "correction", "corrections", "apply"]


def _kr_kg_kb(matrix: int) -> tuple[float, float, float]:
    kr, kb = KR_KB[MATRICES[matrix]]
    return kr, 1 - kr - kb, kb


def luma(frames: np.ndarray, matrix: int = 0) -> np.ndarray:
    """float32 (n, H, W) luma of uint8 RGB frames (n, H, W, 3)."""
    return frames.astype(np.float32) @ np.asarray(_kr_kg_kb(matrix), np.float32)


def planes(frames: np.ndarray, matrix: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (n, H, W) Y', Cb and Cr of uint8 RGB frames (n, H, W, 3)
    (Cb and Cr centred on 0)."""
    kr, _, kb = _kr_kg_kb(matrix)
    y = luma(frames, matrix)
    return y, (frames[..., 2].astype(np.float32) - y) / (2 * (1 - kb)), (frames[..., 0] - y) / (2 * (1 - kr))


def group_means(x: np.ndarray, group: int) -> np.ndarray:
    """float64 (G, H, W) means of (n, H, W) over groups of `group` frames (the last may be shorter)."""
    return np.stack([x[g : g + group].mean(axis=0, dtype=np.float64) for g in range(0, len(x), group)])


def upsampling(cells: int, block: int, size: int) -> np.ndarray:
    """float64 (size, cells): the decoder's linear interpolation of `cells`
    values, one every `block` pixels, to `size` pixels (one axis of `correction`'s bilinear)."""
    eye = torch.eye(cells, dtype=torch.float64)[:, None, None, :]  # each cell alone, as a one-row image
    up = F.interpolate(eye, size=(1, cells * block), mode="bilinear", align_corners=False)
    return up[:, 0, 0, :size].T.numpy()


def measure(source: np.ndarray, decoded: np.ndarray, block: int, group: int, step: int) -> CellLayer:
    """The layer that moves `decoded` towards `source` (one plane of each, (n,
    H, W), the same shape): `fit` to their difference's `group_means`."""
    return fit(group_means(source - decoded, group), block, group, step)


def fit(error: np.ndarray, block: int, group: int, step: int) -> CellLayer:
    """The layer whose correction comes closest, in the least-squares sense,
    to `error` (G, H, W), each group of frames' mean error (`group_means`):
    per group the cell values through the interpolation (`correction`), in
    steps, rounded and clipped. Cell means would be smoothed twice, by the
    averaging and by the interpolation: the fit undoes the second (8-px
    cells at the eval clips' default point: +0.09 to +0.13 dB Y' for 8% to
    30% more layer bytes, bench/RESULTS.md "Coarse layers chosen together,
    fitted, from more cells")."""
    _, H, W = error.shape
    _, h, w = layer_shape(1, H, W, block, 1)
    rows, cols = (np.linalg.pinv(upsampling(c, block, size)) for c, size in ((h, H), (w, W)))
    values = rows @ error @ cols.T / step
    return CellLayer(block, group, step, np.clip(np.round(values), -MAX_VALUE, MAX_VALUE).astype(np.int8))


def correction(layer: CellLayer, height: int, width: int) -> np.ndarray:
    """float32 (G, H, W): each group's correction at every pixel, bilinear
    between cell centres (a cell of `block` pixels upsampled by `block`, then cropped)."""
    G, h, w = layer.values.shape
    grid = torch.from_numpy(layer.values.astype(np.float32) * layer.step)[:, None]
    up = F.interpolate(grid, size=(h * layer.block, w * layer.block), mode="bilinear", align_corners=False)
    return up[:, 0, :height, :width].numpy()


Corrections = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


def corrections(layers: Layers, height: int, width: int) -> Corrections:
    """`correction` of each plane's layer (None for a plane without one): what
    `apply` needs, computed once a chunk."""
    return tuple(None if p is None else correction(p, height, width) for p in layers.planes)  # type: ignore[return-value]


def apply(frames: np.ndarray, layers: Layers, first: int = 0, upsampled: Corrections | None = None,
          matrix: int = 0) -> np.ndarray:
    """uint8 RGB frames (n, H, W, 3) with the layers' corrections added
    (`matrix`: the file's luma matrix, 0 BT.601, 1 BT.709); `first`: the index
    within the chunk of frames[0]; `upsampled`: `corrections`' output if
    already computed. No layer: the frames as they are."""
    if not layers:
        return frames
    n, H, W, _ = frames.shape
    up = corrections(layers, H, W) if upsampled is None else upsampled
    kr, kg, kb = _kr_kg_kb(matrix)
    # What a unit of each plane adds to R, G and B (Y' the same to all three).
    to_rgb = [np.asarray(c, np.float32) for c in ((1, 1, 1), (0, -2 * kb * (1 - kb) / kg, 2 * (1 - kb)),
                                                  (2 * (1 - kr), -2 * kr * (1 - kr) / kg, 0))]
    out = np.empty_like(frames)
    for i in range(n):  # a frame at a time: a 1080p chunk in float32 would take gigabytes
        delta = np.zeros((H, W, 3), np.float32)
        for layer, plane, rgb in zip(layers.planes, up, to_rgb):
            if layer is not None:
                delta += plane[(first + i) // layer.group][..., None] * rgb
        out[i] = np.clip(np.rint(frames[i].astype(np.float32) + delta), 0, 255)
    return out
