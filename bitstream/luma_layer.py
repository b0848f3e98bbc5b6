"""The coarse layers of a chunk: grids of small integers, and their coding.

The tokenizer's 6 to 30 bits per token carry edges and texture better than
the mean level of a region: decoded frames are off by a few Y' codes over
whole blocks, and that costs PSNR on every frame (bench/RESULTS.md, "A
coarse luma layer"). The layer sends that error: one value per cell of
``block`` x ``block`` pixels of the displayed frame and ``group`` frames, in
units of ``step``, which the decoder adds back, interpolated between cell
centres (`codec.luma_layer`; the encoder fits the values to the source's
luma minus the decoded luma). The decoder's colour is off in the same way, more so
(Cb and Cr PSNR 29 to 34 dB on the eval clips): since .tok 1.8 a chunk may
carry the same kind of layer for Cb and Cr as well (`Layers`). This module
knows only the integers and their bytes.

Payload (FORMAT.md, "Luma layer"): empty for a chunk without a layer, else
the u8 fields block, group, step, decay_first, decay_rest, then the values
in (group, row, column) order as one range-coder stream (constriction,
32-bit words): the first group's values as they are, every later group's
as its difference to the group before. Each symbol has the fixed integer
weights of a two-sided geometric distribution, ``w(0) = 2**20`` and
``w(k + 1) = max(1, w(k) * decay // 256)`` for ``|v| = k + 1`` (``decay_first``
for the first group, ``decay_rest`` after), over ``-2 MAX_VALUE .. 2
MAX_VALUE``: integers, so every machine decodes the same values.
A chunk of a file with chroma layers (`encode_layers` with ``chroma``) has
the u32 sizes of its Y' and Cb payloads, then the Y', Cb and Cr payloads
(Cr: the rest), each as above and empty for a plane without a layer; its
payload is empty as a whole where no plane has one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np

__all__ = ["CellLayer", "Layers", "MAX_VALUE", "MIN_BLOCK", "MAX_CELLS", "layer_shape", "encode_layer", "decode_layer",
           "encode_layers", "decode_layers", "layers_size"]

MAX_VALUE = 31  # |value| of a cell, in steps
MIN_BLOCK = 4  # smallest cell side in pixels a reader accepts
MAX_CELLS = 1 << 22  # cells of one chunk's layer a reader accepts (a bound before allocating)
_HEAD = struct.Struct("<BBBBB")  # block, group, step, decay_first, decay_rest
_SPAN = 2 * MAX_VALUE  # symbols are -SPAN .. SPAN
_SIZES = struct.Struct("<II")  # a chunk with chroma layers: its Y' and Cb payload sizes


@dataclass(frozen=True)
class CellLayer:
    """One plane's layer of a chunk: `values` (G, h, w) int, cells of `block`
    x `block` displayed pixels and `group` frames; a cell's correction is
    value * `step` (8-bit units of the plane: Y', Cb or Cr of the RGB frames)."""

    block: int
    group: int
    step: int
    values: np.ndarray

    def __post_init__(self) -> None:
        if not (MIN_BLOCK <= self.block <= 255 and 1 <= self.group <= 255 and 1 <= self.step <= 255):
            raise ValueError(f"luma layer: bad cell ({self.block} px, {self.group} frames, step {self.step})")
        if self.values.ndim != 3 or (self.values.size and np.abs(self.values).max() > MAX_VALUE):
            raise ValueError(f"luma layer: values must be a (G, h, w) grid within +-{MAX_VALUE}")


@dataclass(frozen=True)
class Layers:
    """One chunk's coarse layers by plane: Y', and Cb and Cr in files whose
    header allows them (.tok 1.8); None where a plane has none."""

    y: CellLayer | None = None
    cb: CellLayer | None = None
    cr: CellLayer | None = None

    @property
    def planes(self) -> tuple[CellLayer | None, CellLayer | None, CellLayer | None]:
        return self.y, self.cb, self.cr

    def __bool__(self) -> bool:
        """Whether any plane has a layer."""
        return any(p is not None for p in self.planes)


def layer_shape(frames: int, height: int, width: int, block: int, group: int) -> tuple[int, int, int]:
    """(G, h, w) of the layer of a chunk of `frames` frames of `width` x `height`."""
    return -(-frames // group), -(-height // block), -(-width // block)


def _weights(decay: int) -> np.ndarray:
    """Integer weights of the symbols -SPAN .. SPAN (two-sided geometric)."""
    half = [1 << 20]
    for _ in range(_SPAN):
        half.append(max(1, half[-1] * decay // 256))
    w = np.asarray(half[:0:-1] + half, np.float64)
    return w


def _model(decay: int) -> "constriction.stream.model.Categorical":
    return constriction.stream.model.Categorical(_weights(decay), perfect=False)


def _ideal_bits(symbols: np.ndarray, decay: int) -> float:
    w = _weights(decay)
    return float(-np.log2(w[symbols + _SPAN] / w.sum()).sum())


def _best_decay(symbols: np.ndarray) -> int:
    return min(range(16, 256, 8), key=lambda d: _ideal_bits(symbols, d)) if symbols.size else 128


def _symbols(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = values.astype(np.int64)
    return v[:1].reshape(-1), (v[1:] - v[:-1]).reshape(-1)


def encode_layer(layer: CellLayer | None) -> bytes:
    """The chunk payload of `layer` (b"" for none)."""
    if layer is None:
        return b""
    first, rest = _symbols(layer.values)
    d0, d1 = _best_decay(first), _best_decay(rest)
    enc = constriction.stream.queue.RangeEncoder()
    if first.size:
        enc.encode(first.astype(np.int32) + _SPAN, _model(d0))
    if rest.size:
        enc.encode(rest.astype(np.int32) + _SPAN, _model(d1))
    words = enc.get_compressed().astype("<u4", copy=False).tobytes()
    return _HEAD.pack(layer.block, layer.group, layer.step, d0, d1) + words


def encode_layers(layers: Layers, chroma: bool) -> bytes:
    """The chunk payload of `layers`: with `chroma` (a file whose chunks may carry Cb and Cr
    layers) the three planes' payloads and their sizes, else the Y' layer's alone."""
    if not chroma:
        if layers.cb is not None or layers.cr is not None:
            raise ValueError("Cb and Cr layers need a file with chroma layers")
        return encode_layer(layers.y)
    y, cb, cr = (encode_layer(p) for p in layers.planes)
    return _SIZES.pack(len(y), len(cb)) + y + cb + cr if layers else b""


def layers_size(plane_bytes: tuple[int, int, int], chroma: bool) -> int:
    """The size of `encode_layers`' payload from its planes' `encode_layer`
    sizes (Y', Cb, Cr; 0 for a plane without a layer): what an encoder
    comparing many combinations of the planes' layers needs, without coding each."""
    if not chroma:
        return plane_bytes[0]
    return _SIZES.size + sum(plane_bytes) if any(plane_bytes) else 0


def decode_layers(data: bytes | memoryview, frames: int, height: int, width: int, chroma: bool) -> Layers:
    """Inverse of `encode_layers`; raises ValueError (one line) on a malformed payload."""
    if not chroma:
        return Layers(decode_layer(data, frames, height, width))
    if not len(data):
        return Layers()
    if len(data) < _SIZES.size:
        raise ValueError("coarse layers of a bad size")
    ny, ncb = _SIZES.unpack_from(data)
    if _SIZES.size + ny + ncb > len(data):
        raise ValueError("coarse layers of a bad size")
    view = memoryview(data)[_SIZES.size:]
    layers = Layers(*(decode_layer(part, frames, height, width)
                      for part in (view[:ny], view[ny : ny + ncb], view[ny + ncb :])))
    if not layers:
        raise ValueError("coarse layers without a layer")  # the writer leaves such a chunk's payload empty
    return layers


def decode_layer(data: bytes | memoryview, frames: int, height: int, width: int) -> CellLayer | None:
    """Inverse of `encode_layer` for a chunk of `frames` frames of `width` x
    `height`; raises ValueError (one line) on a malformed payload."""
    if not len(data):
        return None
    if len(data) < _HEAD.size or (len(data) - _HEAD.size) % 4:
        raise ValueError("luma layer of a bad size")
    block, group, step, d0, d1 = _HEAD.unpack_from(data)
    if block < MIN_BLOCK or not group or not step or not d0 or not d1:
        raise ValueError("luma layer with a bad cell")
    shape = layer_shape(frames, height, width, block, group)
    n = shape[0] * shape[1] * shape[2]
    if n > MAX_CELLS:
        raise ValueError(f"luma layer of {n} cells, more than {MAX_CELLS}")
    words = np.frombuffer(data, "<u4", offset=_HEAD.size).astype(np.uint32)
    if not len(words):
        raise ValueError("luma layer without values")
    dec = constriction.stream.queue.RangeDecoder(words)
    plane = shape[1] * shape[2]
    try:
        first = dec.decode(_model(d0), plane).astype(np.int64) - _SPAN
        rest = dec.decode(_model(d1), n - plane).astype(np.int64) - _SPAN if n > plane else np.zeros(0, np.int64)
    except Exception as exc:  # constriction reports undecodable data this way
        raise ValueError(f"luma layer undecodable ({exc})") from None
    if not dec.maybe_exhausted():
        raise ValueError("luma layer has data after its last value")
    values = np.cumsum(np.concatenate([first, rest]).reshape(shape), axis=0)
    if np.abs(values).max() > MAX_VALUE:
        raise ValueError("luma layer value out of range")
    return CellLayer(block, group, step, values.astype(np.int8))
