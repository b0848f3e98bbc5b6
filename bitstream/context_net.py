"""Entropy model 3: a small integer network predicts every token from its decoded neighbours.

Models 1 and 2 code each bit plane on its own, from counts the chunk learns
as it goes. Model 3 instead gives every K-bit token (K <= ``MAX_NET_BITS``)
one probability for each of its 2**K values, computed by a network that was
trained once on a tokenizer's tokens and ships inside that tokenizer's
entropy prior (`EntropyPrior.net`). It sees all K bits of the neighbours at
once, which the per-plane counts cannot; on the default tokenizer's 6-bit
tokens it spends about a fifth fewer bits than model 2 (bench/RESULTS.md).

Decoding order. Within a frame, the anti-diagonal wavefronts d = 2 y + x,
d = 0 .. D - 1 with D = 2 (H - 1) + W, y ascending within a wavefront: a
token's left, upper-left, upper and upper-right neighbours lie on earlier
wavefronts. The frames are decoded together, frame t lagging ``LAG`` = 4
wavefronts behind frame t - 1: step k = 0 .. D - 1 + 4 (T - 1) holds
wavefront k - 4 t of every frame t that has one, frames ascending. The
tokens of frame t-1 that a token of wavefront d uses (3 x 3 around it) lie
on wavefronts up to d + 3, decoded one step earlier at the latest, so a step
depends only on earlier steps: a step is one network call and one coder
call (D + 4 (T - 1) of them a chunk, not T D).

Input of the token at (t, y, x): the K signs (+1 for a 1 bit, -1 for a 0
bit; 0 outside the grid) of

  * the 11 tokens of frame t in the 5 x 5 window around it that lie on
    earlier wavefronts, ``CURRENT`` ((dy, dx) with 2 dy + dx < 0),
  * the 3 x 3 tokens of frame t-1 centred on it (``PREVIOUS``; 0 for t = 0)
    and the token of frame t-2 at its place (0 for t < 2),

bit i of a token being sign i, then (a net with side inputs, ``side_bits``
0 < S <= ``MAX_SIDE_BITS``) the S signs of each of the 3 x 3 side tokens of frame t centred on
it (``SIDE``, row by row; 0 outside the grid), then two flags (t == 0,
t == 1): F = 21 K + 9 S + 2 inputs. Side tokens are another S-bit grid of
the same shape that the decoder already has: entropy model 4 codes the low
bits of every token of a chunk first, with a net of its own, and then the
bits above them a net at a time, each net's side tokens being all the bits
below its own, decoded for the whole chunk, so a token's higher bits see
the lower bits of its own place and its 8 neighbours.

Network: F -> N1 -> N2 -> 2**K, with integer weights and biases and
integer activations, like an int8-quantised MLP:

    a1 = x @ W1 + B1;   h1 = clip(floor(a1 / 2**s1), 0, 255)
    a2 = h1 @ W2 + B2;  h2 = clip(floor(a2 / 2**s2), 0, 255)
    z  = h2 @ W3 + B3

and value v of the token gets the weight ``TABLE[min(floor((max z - z_v) /
2**g), len(TABLE) - 1)]`` (TABLE: positive integers, decreasing; it maps
the logit gap to exp(-gap) in fixed point). The coder receives the weights
as float64 integers and normalises them itself (constriction's
``Categorical(perfect=False)``, deterministic integer code after the
normalisation, which is a float64 sum and division in a fixed order).

Exactness. Every product and sum above is an integer of magnitude below
2**24 (checked when a net is built: for each output, the largest input
times the sum of |weights|, plus |bias|), so float32 matrix products compute
them exactly in any summation order: BLAS, threads and batch composition
cannot change a bit, and the encoder (which batches many steps) and the
decoder (one step at a time) see the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ContextNet", "MAX_NET_BITS", "MAX_SIDE_BITS", "CURRENT", "PREVIOUS", "SIDE", "chunk_inputs", "code_chunk", "n_inputs", "wave_order"]

MAX_NET_BITS = 8  # 2**K outputs per token
MAX_SIDE_BITS = 24  # side tokens a net may see: the 24 bits below a 30-bit token's top 6
CURRENT = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if 2 * dy + dx < 0)
PREVIOUS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
SIDE = PREVIOUS  # the side tokens a token sees, in its own frame
_PAD = 2  # rows / columns of zeros around a padded frame
_EXACT = 1 << 24  # float32 holds every integer below this exactly
_ACT_MAX = 255


def n_inputs(bits: int, side_bits: int = 0) -> int:
    """F: the inputs of a net for `bits`-bit tokens (with `side_bits`-bit side tokens)."""
    return (len(CURRENT) + len(PREVIOUS) + 1) * bits + len(SIDE) * side_bits + 2


@dataclass(frozen=True, eq=False)
class ContextNet:
    """The integer network of entropy model 3 (see the module docstring).

    ``weights`` are the three int (in, out) matrices W1, W2, W3; ``biases``
    the three int vectors B1, B2, B3; ``shifts`` (s1, s2, g); ``table`` the
    positive, non-increasing integer weights of the logit gaps; ``side_bits``
    the bits of the side tokens it sees (0: none).
    """

    bits: int
    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    biases: tuple[np.ndarray, np.ndarray, np.ndarray]
    shifts: tuple[int, int, int]
    table: np.ndarray
    side_bits: int = 0

    def __post_init__(self) -> None:
        for name, lo, hi in (("bits", 1, MAX_NET_BITS), ("side_bits", 0, MAX_SIDE_BITS)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"a context net's {name} must be in {lo}..{hi}, not {v!r}")
        if len(self.weights) != 3 or len(self.biases) != 3 or len(self.shifts) != 3:
            raise ValueError("a context net has three layers and three shifts")
        fan_in, in_max = n_inputs(self.bits, self.side_bits), 1
        w32, b32 = [], []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            w, b = np.asarray(w), np.asarray(b)
            if not (np.issubdtype(w.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
                raise ValueError(f"context net layer {i + 1}: weights and biases must be integers")
            out = 2 ** self.bits if i == 2 else w.shape[-1]
            if w.shape != (fan_in, out) or b.shape != (out,):
                raise ValueError(f"context net layer {i + 1}: weights {w.shape}, biases {b.shape}; "
                                 f"expected ({fan_in}, {out}) and ({out},)")
            bound = in_max * np.abs(w.astype(np.int64)).sum(axis=0) + np.abs(b.astype(np.int64))
            if bound.max(initial=0) >= _EXACT:
                raise ValueError(f"context net layer {i + 1} can reach 2**24: not exact in float32")
            w32.append(w.astype(np.float32))
            b32.append(b.astype(np.float32))
            fan_in, in_max = out, _ACT_MAX
        if any(not isinstance(s, (int, np.integer)) or not 0 <= s <= 30 for s in self.shifts):
            raise ValueError("context net shifts must be integers in [0, 30]")
        t = np.asarray(self.table)
        if (t.ndim != 1 or not len(t) or not np.issubdtype(t.dtype, np.integer) or t.min() < 1
                or t.max() >= _EXACT or (np.diff(t) > 0).any()):
            raise ValueError("context net table must be positive, non-increasing integers below 2**24")
        object.__setattr__(self, "_w", tuple(w32))
        object.__setattr__(self, "_b", tuple(b32))
        object.__setattr__(self, "_table", t.astype(np.float64))
        object.__setattr__(self, "_signs", _value_signs(self.bits))

    # -- storage (inside an EntropyPrior's .npz, names prefixed "net/") --

    def arrays(self) -> dict[str, np.ndarray]:
        """The net as named int32 arrays."""
        out = {f"w{i + 1}": np.asarray(w, np.int32) for i, w in enumerate(self.weights)}
        out.update({f"b{i + 1}": np.asarray(b, np.int32) for i, b in enumerate(self.biases)})
        out["shifts"] = np.asarray(self.shifts, np.int32)
        out["table"] = np.asarray(self.table, np.int32)
        if self.side_bits:
            out["side_bits"] = np.asarray(self.side_bits, np.int32)
        return out

    @classmethod
    def from_arrays(cls, bits: int, arrays: Mapping[str, np.ndarray]) -> "ContextNet":
        """Inverse of `arrays`; raises ValueError if they do not make a net."""
        try:
            side = arrays.get("side_bits")
            return cls(bits, tuple(arrays[f"w{i}"] for i in (1, 2, 3)), tuple(arrays[f"b{i}"] for i in (1, 2, 3)),
                       tuple(int(s) for s in arrays["shifts"]), arrays["table"], 0 if side is None else int(side))
        except KeyError as exc:
            raise ValueError(f"context net lacks array {exc}") from None

    # -- inference --

    def value_weights(self, x: np.ndarray) -> np.ndarray:
        """Integer weights (float64) of the 2**K values, one row per token,
        from the tokens' inputs x ((N, F) float32, see `chunk_inputs`)."""
        s1, s2, g = self.shifts
        a1 = x @ self._w[0]
        a1 += self._b[0]
        h = np.floor(a1 * np.float32(2.0 ** -s1))
        np.clip(h, 0, _ACT_MAX, out=h)
        a2 = h @ self._w[1]
        a2 += self._b[1]
        h = np.floor(a2 * np.float32(2.0 ** -s2))
        np.clip(h, 0, _ACT_MAX, out=h)
        z = h @ self._w[2]
        z += self._b[2]
        gap = z.max(axis=1, keepdims=True) - z
        idx = np.floor(gap * np.float32(2.0 ** -g))
        np.minimum(idx, len(self._table) - 1, out=idx)
        return self._table[idx.astype(np.intp)]

    def signs_of(self, values: np.ndarray) -> np.ndarray:
        """(..., K) int8 signs of token values."""
        return self._signs[values]

    @functools.cached_property
    def digest(self) -> bytes:
        """Bytes that identify the net (for the prior's id)."""
        parts = [b"tokcodec-context-net-1 %d" % self.bits]
        for name, a in sorted(self.arrays().items()):
            parts += [name.encode(), np.asarray(a.shape, "<i8").tobytes(), a.astype("<i4").tobytes()]
        return b"\0".join(parts)


def _value_signs(bits: int) -> np.ndarray:
    v = np.arange(2 ** bits)
    return (((v[:, None] >> np.arange(bits)) & 1) * 2 - 1).astype(np.int8)


# ---------------------------------------------------------------------------
# order and inputs


@functools.lru_cache(maxsize=32)
def wave_order(H: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decoding order of an H x W frame: (positions, bounds, centres).

    positions: flat row-major indices in decoding order; wavefront d holds
    positions[bounds[d]:bounds[d + 1]]. centres: for each position in that
    order, its flat index in the padded frame ((H + 2 PAD) x (W + 2 PAD)).
    """
    y, x = np.divmod(np.arange(H * W), W)
    key = (2 * y + x) * H + y
    positions = np.argsort(key, kind="stable")
    d = (2 * y + x)[positions]
    bounds = np.searchsorted(d, np.arange(2 * (H - 1) + W + 1)) if H * W else np.zeros(1, np.intp)
    centres = (y[positions] + _PAD) * (W + 2 * _PAD) + x[positions] + _PAD
    for a in (positions, bounds, centres):
        a.flags.writeable = False
    return positions, bounds, centres


# ---------------------------------------------------------------------------
# coding one chunk


LAG = 4  # wavefronts frame t trails frame t-1 by (its inputs from t-1 reach wavefront d + 3)


@functools.lru_cache(maxsize=8)
def _input_offsets(H: int, W: int) -> np.ndarray:
    """Flat offsets, in a padded array of frames (`_padded_frames`), from a
    token to each of its inputs' tokens, in input order."""
    Wp, Hp = W + 2 * _PAD, H + 2 * _PAD
    offs = [dy * Wp + dx for dy, dx in CURRENT]
    offs += [-Hp * Wp + dy * Wp + dx for dy, dx in PREVIOUS]
    offs.append(-2 * Hp * Wp)
    out = np.asarray(offs, np.intp)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _side_offsets(W: int) -> np.ndarray:
    """Flat offsets from a token to its side tokens (`SIDE`), in a padded frame of width W + 2 PAD."""
    out = np.asarray([dy * (W + 2 * _PAD) + dx for dy, dx in SIDE], np.intp)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _steps(T: int, H: int, W: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """For each step: ((t, lo, hi), ...), the wavefront slices [lo, hi) of
    wave_order(H, W) of the frames it decodes, frames ascending."""
    _, bounds, _ = wave_order(H, W)
    D = len(bounds) - 1
    steps = []
    for k in range(D + LAG * (T - 1)):
        parts = tuple((t, int(bounds[k - LAG * t]), int(bounds[k - LAG * t + 1])) for t in range(T)
                      if 0 <= k - LAG * t < D and bounds[k - LAG * t] < bounds[k - LAG * t + 1])
        if parts:
            steps.append(parts)
    return tuple(steps)


def _padded_frames(T: int, H: int, W: int, K: int) -> np.ndarray:
    """Zeroed signs of a chunk, flat: frame t at index t + 2 (two frames of
    zeros before frame 0), each frame with PAD rows and columns of zeros around."""
    return np.zeros(((T + 2) * (H + 2 * _PAD) * (W + 2 * _PAD), K), np.int8)


def _set_signs(frames: np.ndarray, signs: np.ndarray) -> None:
    """Write a chunk's (T, H, W, K) signs into its padded frames."""
    T, H, W, K = signs.shape
    frames.reshape(T + 2, H + 2 * _PAD, W + 2 * _PAD, K)[2:, _PAD:_PAD + H, _PAD:_PAD + W] = signs


def _inputs(frames: np.ndarray, at: np.ndarray, t: np.ndarray, H: int, W: int,
            side: np.ndarray | None = None) -> np.ndarray:
    """The (N, F) float32 inputs of the tokens at padded indices `at` of frames
    `t`; `side`: the side tokens' padded frames (None: a net without them)."""
    own = len(CURRENT) + len(PREVIOUS) + 1
    K, S = frames.shape[1], 0 if side is None else side.shape[1]
    x = np.empty((len(at), n_inputs(K, S)), np.float32)
    x[:, :own * K] = frames[at[:, None] + _input_offsets(H, W)].reshape(len(at), -1)
    if S:
        x[:, own * K:-2] = side[at[:, None] + _side_offsets(W)].reshape(len(at), -1)
    x[:, -2] = t == 0
    x[:, -1] = t == 1
    return x


def _side_frames(side: np.ndarray | None, side_bits: int, shape: tuple[int, int, int]) -> np.ndarray | None:
    """The padded frames of a chunk's side tokens (None for a net without them)."""
    if not side_bits:
        return None
    if side is None or np.shape(side) != tuple(shape):
        raise ValueError(f"this context net needs side tokens of shape {tuple(shape)}")
    frames = _padded_frames(*shape, side_bits)
    bit = (np.asarray(side)[..., None] >> np.arange(side_bits)) & 1  # no 2**S-row table: S may be 24
    _set_signs(frames, (bit * 2 - 1).astype(np.int8))
    return frames


def chunk_inputs(tokens: np.ndarray, net_bits: int, side: np.ndarray | None = None, side_bits: int = 0) -> np.ndarray:
    """The inputs of every token of a (T, H, W) chunk of `net_bits`-bit tokens
    (with its `side_bits`-bit side tokens `side`, the same shape), (T H W, F)
    float32, rows in (t, y, x) order: what the net sees when coding it."""
    T, H, W = tokens.shape
    frames = _padded_frames(T, H, W, net_bits)
    _set_signs(frames, _value_signs(net_bits)[tokens])
    y, x = np.divmod(np.arange(H * W), W)
    stride = (H + 2 * _PAD) * (W + 2 * _PAD)
    t = np.repeat(np.arange(T), H * W)
    at = (t + 2) * stride + np.tile((y + _PAD) * (W + 2 * _PAD) + x + _PAD, T)
    return _inputs(frames, at, t, H, W, _side_frames(side, side_bits, tokens.shape))


# Tokens per network call when encoding (all inputs are known): whole steps up to at least this
# many. Small batches keep the inputs and activations in cache: 1,024 codes 1.5x to 2.1x faster
# than 65,536 did (a 1080p chunk's 24-bit tokens; 6- and 12-bit ones of carphone and realshort at 3x;
# bench/RESULTS.md, "Large frames' top points coded by a chain of nets")
_BATCH = 1 << 10


def code_chunk(net: ContextNet, shape: tuple[int, int, int], code: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
               tokens: np.ndarray | None = None, side: np.ndarray | None = None) -> np.ndarray:
    """Walk a chunk in decoding order, calling ``code(weights, symbols)``.

    Encoding (`tokens` given): batches of whole steps (about 1k tokens), in
    decoding order, with the tokens as symbols; returns `tokens`. Decoding:
    one call per step with symbols None; `code` returns the decoded values,
    and the decoded chunk is returned. `side`: the chunk's side tokens, for
    a net that has them (``net.side_bits``).
    """
    T, H, W = shape
    out = np.zeros(shape, np.int64) if tokens is None else tokens
    if not out.size:
        return out
    side_frames = _side_frames(side, net.side_bits, shape)
    positions, _, centres = wave_order(H, W)
    stride = (H + 2 * _PAD) * (W + 2 * _PAD)
    frames = _padded_frames(T, H, W, net.bits)
    if tokens is not None:
        _set_signs(frames, net.signs_of(tokens))
    flat = out.reshape(T, H * W)
    steps = _steps(T, H, W)
    batch: list[tuple[int, int, int]] = []
    for i, parts in enumerate(steps):
        batch += parts
        if tokens is not None and sum(hi - lo for _, lo, hi in batch) < _BATCH and i + 1 < len(steps):
            continue
        at = np.concatenate([centres[lo:hi] + (t + 2) * stride for t, lo, hi in batch])
        t_of = np.concatenate([np.full(hi - lo, t) for t, lo, hi in batch])
        weights = net.value_weights(_inputs(frames, at, t_of, H, W, side_frames))
        if tokens is not None:
            code(weights, np.concatenate([flat[t, positions[lo:hi]] for t, lo, hi in batch]))
        else:
            values = code(weights, None)
            frames[at] = net.signs_of(values)
            n = 0
            for t, lo, hi in batch:
                flat[t, positions[lo:hi]] = values[n:n + hi - lo]
                n += hi - lo
        batch = []
    return out
