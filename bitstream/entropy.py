"""Lossless entropy coding of LFQ token grids (one chunk per call).

A chunk is a numpy integer array ``tokens`` shaped ``(T, H, W)``: T latent
frames of H x W tokens, each token a K-bit LFQ code (``1 <= K <= 30``) whose
bit i, ``(token >> i) & 1``, is the sign of latent channel i. Every call codes
one chunk on its own (no state is carried between calls), so a reader can
start at any chunk.

Models (``EntropyParams.model_id``; the ``.tok`` header stores the params):

0 -- raw. The K bits of every token, least significant first, tokens in C
     order, packed into bytes (``np.packbits(..., bitorder="little")``),
     zero-padded to a whole byte. The anchor: exactly ``ceil(T*H*W*K / 8)``
     bytes.

1 -- context model + range coder (``constriction.stream.queue``, Bernoulli
     models). Each bit of each token is one binary decision coded with an
     adaptive probability looked up from a context. The order of decisions is
     chosen so that whole arrays of them can be decoded in one vectorised
     call:

     * frames in order t = 0 .. T-1; within a frame, all K bit planes at once;
     * positions in a multi-resolution checkerboard ("pyramid") order. With L
       levels, first the lattice of every 2^L-th row and column ("base"),
       then for s = 2^(L-1), ..., 2, 1 three phases that refine the lattice of
       spacing 2s to spacing s: "d" = (s, s) mod 2s, whose 4 diagonal
       neighbours at distance s are decoded; then (0, s) and (s, 0) mod 2s
       ("hv"), whose 4 axis neighbours at distance s are decoded. Frame 0 of
       a chunk (no previous frame) uses L = 3, later frames L = 2.
     * Each phase is one constriction call over K x (positions in the phase)
       decisions, except while its probability table is young (``warmup``):
       then it is cut into bands of rows that double in size, so that the
       counts adapt within the first frames of the chunk.

     Contexts. Every bit plane has its own counts; there is one table (K
     planes x C contexts) per frame type (first / later), level and phase
     kind ("base", "d", "hv"):

     * frame 0: the sum of the signs (+1 / -1, 0 outside the grid or not yet
       decoded) of the 4 decoded neighbours in the same plane (9 values; the
       "base" lattice has none);
     * frame t > 0: the coded decision is ``bit XOR bit at the same place in
       frame t-1`` ("did it change"), and the context is
       a = agreement of the 4 axis neighbours in frame t-1 with that bit,
       c = agreement of the 4 decoded neighbours in frame t with it (phases
       other than "base"), each a sum of signs in -4..4 halved to 0..4, and
       f = how many bits changed, over all K planes, in the 4 decoded
       neighbouring tokens: 0, at most K/4, or more (a motion detector:
       when content moves, many bits of a token change together).
       So 5 contexts per plane for "base" and 5 x 5 x 3 = 75 for the others.

     The choice was measured on structured synthetic chunks (see
     ``bench/entropy_speed.py``): the "changed" decision with per-plane
     counts carries most of the gain; the pyramid order gives frame 0 (and
     so short chunks) its spatial context; c and f pay off where changes are
     spatially coherent (moving regions); warm-up bands and the shared
     back-off estimate below cut the cost of learning, which dominates short
     chunks.

Bit-exactness. The probabilities the coder sees are computed from integer
counts only, identically by encoder and decoder:

  counts c0, c1 per context, in half units, start at 1, 1 (a uniform prior)
  and grow by 2 per decision; when c0 + c1 > ``count_limit`` both are
  halved, rounding up. With S0, S1 the sums of the same context's counts
  over the K planes and over the tables of its group (the non-base tables
  of one frame type share a group, each base table is its own), a shared
  estimate that young per-plane contexts back off to,
      q  = (S1 << B) // (S0 + S1)
      p1 = ((c1 << B) + m * q) // (c0 + c1 + m),   clipped to [1, 2^B - 1]
  with B = ``prob_bits`` and m = ``backoff``; a table's probabilities are
  recomputed after each of its own steps. The coder receives
  ``p1 * 2**-B``, a dyadic float64 that is exact; constriction then maps it
  to its own fixed-point model with deterministic integer code. Counts are
  updated with ``np.bincount`` after every vectorised step. There is no
  float arithmetic (no exp, log, accumulation) anywhere in the model and no
  threading, so the bytes are identical on every machine and thread count.

This module knows about token grids and bytes only (no torch, no pixels).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import constriction
import numpy as np

__all__ = ["EntropyError", "EntropyParams", "encode_tokens", "decode_tokens", "MAX_BITS"]

MAX_BITS = 30

# `perfect` is given explicitly: its default changed between constriction
# versions, and it selects the fixed-point model, so it is part of the format.
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)

_INTRA_LEVELS = 3
_INTER_LEVELS = 2
_PAD = 1 << (max(_INTRA_LEVELS, _INTER_LEVELS) - 1)  # farthest neighbour read

_N4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DG = ((-1, -1), (-1, 1), (1, -1), (1, 1))

_C_INTRA = 9  # sum of 4 neighbour signs + 4
_C_INTER_BASE = 5  # a
_C_INTER = 75  # a + 5 c + 25 f


class EntropyError(ValueError):
    """Corrupt, truncated or inconsistent entropy-coded data."""


@dataclass(frozen=True)
class EntropyParams:
    """Entropy-model id and parameters, as stored in the ``.tok`` header.

    model_id:    0 = raw bit-packing, 1 = context model (see module docstring).
    prob_bits:   B, precision of the probabilities given to the coder (8..16).
    count_limit: c0 + c1 (half units) above which a context's counts halve;
                 sets how fast the model forgets (16..2**20).
    backoff:     m, weight (half units) of the shared estimate (all planes,
                 all tables of a group) in a plane's probability (0..2**16).
    warmup:      a phase is coded in bands of rows that double in size while
                 its table has coded fewer than ``warmup`` decisions per bit
                 plane (0..2**16), so that young counts adapt early.
    """

    model_id: int = 1
    prob_bits: int = 15
    count_limit: int = 8192
    backoff: int = 128
    warmup: int = 1024

    def check(self, error: type[Exception] = ValueError) -> None:
        ranges = {
            "model_id": (0, 1),
            "prob_bits": (8, 16),
            "count_limit": (16, 1 << 20),
            "backoff": (0, 1 << 16),
            "warmup": (0, 1 << 16),
        }
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
                raise error(f"entropy params: {name}={v!r} is not an integer in [{lo}, {hi}]")


# ---------------------------------------------------------------------------
# public API


def encode_tokens(tokens: np.ndarray, bits: int, params: EntropyParams = EntropyParams()) -> bytes:
    """Code one chunk of tokens, shape (T, H, W), values in [0, 2**bits), to bytes."""
    bits = _check_bits(bits, ValueError)
    _check_params(params, ValueError)
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must have shape (T, H, W), got {tokens.shape}")
    if not (np.issubdtype(tokens.dtype, np.integer) or tokens.dtype == np.bool_):
        raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or int(tokens.max()) >= 1 << bits):
        raise ValueError(f"tokens must lie in [0, 2**{bits})")
    tokens = tokens.astype(np.int64, copy=False)
    if params.model_id == 0:
        return _raw_encode(tokens, bits)
    return _ctx_encode(tokens, bits, params)


def decode_tokens(
    data: bytes, shape: tuple[int, int, int], bits: int, params: EntropyParams = EntropyParams()
) -> np.ndarray:
    """Inverse of `encode_tokens`: an int64 array of the given shape.

    Raises EntropyError (a ValueError) for inconsistent input. Garbage that
    happens to be well-formed decodes to some tokens of the right shape (the
    container's CRC is what detects it).
    """
    bits = _check_bits(bits, EntropyError)
    _check_params(params, EntropyError)
    try:
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise EntropyError(f"bad shape {shape!r}") from None
    if len(shape) != 3 or min(shape) < 0:
        raise EntropyError(f"bad shape {shape!r}")
    try:
        data = memoryview(data).cast("B")
    except (TypeError, ValueError):
        raise EntropyError("data must be a contiguous bytes-like object") from None
    if params.model_id == 0:
        return _raw_decode(data, shape, bits)
    return _ctx_decode(data, shape, bits, params)


def _check_bits(bits, error) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise error(f"bits must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return int(bits)


def _check_params(params, error) -> None:
    if not isinstance(params, EntropyParams):
        raise error(f"params must be EntropyParams, got {type(params).__name__}")
    params.check(error)


# ---------------------------------------------------------------------------
# model 0: raw bit packing


def _raw_encode(tokens: np.ndarray, bits: int) -> bytes:
    flat = tokens.reshape(-1).astype("<u4")
    b = np.unpackbits(flat.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]
    return np.packbits(b.reshape(-1), bitorder="little").tobytes()


def _raw_decode(data: memoryview, shape, bits: int) -> np.ndarray:
    n = shape[0] * shape[1] * shape[2]
    nbits = n * bits
    if len(data) != (nbits + 7) // 8:
        raise EntropyError(f"raw payload is {len(data)} bytes, expected {(nbits + 7) // 8}")
    b = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    if b[nbits:].any():
        raise EntropyError("raw payload has non-zero padding bits")
    b = b[:nbits].reshape(n, bits)
    out = np.zeros((n, 32), np.uint8)
    out[:, :bits] = b
    words = np.packbits(out, axis=1, bitorder="little").view("<u4")[:, 0]
    return words.astype(np.int64).reshape(shape)


# ---------------------------------------------------------------------------
# model 1: context model


def _phases(levels: int):
    """(table name, lattice step, y0, x0, neighbour offsets) in coding order."""
    out = [("base", 1 << levels, 0, 0, ())]
    for lev in reversed(range(levels)):
        s = 1 << lev
        dg = tuple((dy * s, dx * s) for dy, dx in _DG)
        n4 = tuple((dy * s, dx * s) for dy, dx in _N4)
        out.append(((lev, "d"), 2 * s, s, s, dg))
        out.append(((lev, "hv"), 2 * s, 0, s, n4))
        out.append(((lev, "hv"), 2 * s, s, 0, n4))
    return tuple(out)


_INTRA = _phases(_INTRA_LEVELS)
_INTER = _phases(_INTER_LEVELS)


class _Table:
    """Adaptive counts for K planes x C contexts, and their probabilities.

    ``prob`` holds each context's probability twice, so that ``2 * ctx`` is the
    lookup index and ``2 * ctx + decision`` the count index: one index array
    serves both. Tables whose contexts mean the same thing (the non-base
    phases of one frame type) form a group, whose counts summed over planes
    and tables are the shared estimate a young per-plane context backs off to.
    """

    __slots__ = ("K", "C", "counts", "plane_sum", "prob", "coded", "params", "group")

    def __init__(self, K: int, C: int, params: EntropyParams, group: list):
        self.K, self.C, self.params, self.group = K, C, params, group
        self.counts = np.ones(2 * K * C, np.int64)  # interleaved c0, c1
        self.plane_sum = self.counts.reshape(K, C, 2).sum(axis=0)
        self.coded = 0
        self.prob = np.empty(2 * K * C, np.float64)
        group.append(self)
        self._refresh()

    def young(self) -> bool:
        return self.coded < self.params.warmup * self.K

    def _refresh(self) -> None:
        K, C = self.K, self.C
        B = self.params.prob_bits
        m = self.params.backoff
        c = self.counts.reshape(K, C, 2)
        n = c[..., 0] + c[..., 1]
        if m:
            s = self.group[0].plane_sum
            for other in self.group[1:]:
                s = s + other.plane_sum
            q = (s[:, 1] << B) // (s[:, 0] + s[:, 1])
            p = ((c[..., 1] << B) + m * q) // (n + m)
        else:
            p = (c[..., 1] << B) // n
        np.maximum(p, 1, out=p)
        np.minimum(p, (1 << B) - 1, out=p)
        # p < 2**16 times 2**-B: an exact float64
        np.multiply(p[..., None], 1.0 / (1 << B), out=self.prob.reshape(K, C, 2))

    def update(self, idx2: np.ndarray) -> None:
        """idx2 = 2 * context + decision, for every decision just coded."""
        c = self.counts
        c += 2 * np.bincount(idx2, minlength=c.size)
        lim = self.params.count_limit
        cc = c.reshape(-1, 2)
        n = cc[:, 0] + cc[:, 1]
        while n.max() > lim:
            big = n > lim
            cc[big] = (cc[big] + 1) >> 1
            n = cc[:, 0] + cc[:, 1]
        self.plane_sum = c.reshape(self.K, self.C, 2).sum(axis=0)
        self.coded += idx2.size
        self._refresh()


def _walk(K, H, W, T, params, code, frames_in=None, frames_out=None):
    """Visit every decision of a chunk in coding order (shared by both sides).

    ``code(prob, decisions)`` codes one vectorised step: the encoder passes the
    decisions (int32) and gets them back, the decoder passes None and gets the
    decoded ones. Encoder: ``frames_in[t]`` is frame t's tokens. Decoder:
    ``frames_out[t]`` receives them.
    """
    pad = _PAD
    Hp, Wp = H + 2 * pad, W + 2 * pad
    inner = (slice(None), slice(pad, pad + H), slice(pad, pad + W))
    cur = np.zeros((K, Hp, Wp), np.int8)  # sign of each decoded bit, 0 elsewhere
    prev = np.zeros((K, Hp, Wp), np.int8)
    changed = np.zeros((Hp, Wp), np.int16)  # bits changed per token (frame t)
    plane = np.arange(K, dtype=np.int64)[:, None, None]
    tables: dict = {}
    decoding = frames_in is None

    groups: dict = {}

    def table(key, C):
        tab = tables.get(key)
        if tab is None:
            group = groups.setdefault((key[0], key[1] == "base"), [])
            tab = tables[key] = _Table(K, C, params, group)
        return tab

    for t in range(T):
        prev, cur = cur, prev
        if decoding:
            cur[inner] = 0
        else:
            cur[inner] = _token_signs(frames_in[t], K)
        if t > 0:
            P = prev[inner]
            npv = (prev[:, pad - 1:pad - 1 + H, pad:pad + W] + prev[:, pad + 1:pad + 1 + H, pad:pad + W]
                   + prev[:, pad:pad + H, pad - 1:pad - 1 + W] + prev[:, pad:pad + H, pad + 1:pad + 1 + W])
            a = (npv * P + 4) >> 1  # int8, 0..4
            a2_base = 2 * (a + _C_INTER_BASE * plane)  # int64, lookup index
            a2 = 2 * (a + _C_INTER * plane)
            changed[...] = 0
        for name, step, y0, x0, offs in (_INTER if t else _INTRA):
            hn = len(range(y0, H, step))
            wn = len(range(x0, W, step))
            if hn == 0 or wn == 0:
                continue
            if t == 0:
                tab = table(("intra", name), _C_INTRA)
            else:
                tab = table(("inter", name), _C_INTER if offs else _C_INTER_BASE)
            i0, band = 0, 1
            while i0 < hn:
                if tab.young():
                    i1 = min(hn, i0 + band)
                    band *= 2
                else:
                    i1 = hn
                ya, yb = pad + y0 + step * i0, pad + y0 + step * (i1 - 1) + 1
                xa, xb = pad + x0, pad + x0 + step * (wn - 1) + 1
                ys, xs = slice(ya, yb, step), slice(xa, xb, step)
                if offs:
                    cs = None
                    for dy, dx in offs:
                        v = cur[:, ya + dy:yb + dy:step, xa + dx:xb + dx:step]
                        cs = v + 0 if cs is None else cs + v  # int8, -4..4
                if t == 0:
                    idx = 2 * ((cs + 4) + _C_INTRA * plane) if offs else np.broadcast_to(
                        2 * _C_INTRA * plane + 8, (K, i1 - i0, wn))
                else:
                    yq, xq = slice(ya - pad, yb - pad, step), slice(xa - pad, xb - pad, step)
                    Pv = P[:, yq, xq]
                    if offs:
                        ns = None
                        for dy, dx in offs:
                            v = changed[ya + dy:yb + dy:step, xa + dx:xb + dx:step]
                            ns = v + 0 if ns is None else ns + v
                        f = (ns > 0).astype(np.int8) + (4 * ns > K)
                        idx = a2[:, yq, xq] + 10 * ((cs * Pv + 4) >> 1)  # c: 0..4
                        idx += 50 * f
                    else:
                        idx = a2_base[:, yq, xq]
                idx = idx.reshape(-1)
                prob = tab.prob[idx]
                if decoding:
                    x = code(prob, None)
                    x8 = x.astype(np.int8).reshape(K, i1 - i0, wn)
                    if t == 0:
                        cur[:, ys, xs] = 2 * x8 - 1
                    else:
                        cur[:, ys, xs] = Pv - 2 * Pv * x8
                else:
                    cv = cur[:, ys, xs]
                    x8 = (cv > 0) if t == 0 else (cv != Pv)
                    x = x8.reshape(-1).astype(np.int32)
                    code(prob, x)
                    x8 = x8.view(np.int8) if t else None
                if t > 0:
                    changed[ys, xs] = x8.sum(axis=0, dtype=np.int16)
                tab.update(idx + x)
                i0 = i1
        if decoding:
            frames_out[t] = _signs_token(cur[inner], K)


def _token_signs(frame: np.ndarray, K: int) -> np.ndarray:
    """(H, W) tokens -> (K, H, W) int8 signs (+1 for a 1 bit, -1 for 0)."""
    H, W = frame.shape
    b = np.unpackbits(frame.astype("<u4").view(np.uint8).reshape(H, W, 4), axis=2, bitorder="little")
    return (2 * np.moveaxis(b[:, :, :K], 2, 0) - 1).astype(np.int8)


def _signs_token(s: np.ndarray, K: int) -> np.ndarray:
    """Inverse of _token_signs."""
    b = np.packbits(s > 0, axis=0, bitorder="little")  # (ceil(K/8), H, W)
    out = b[0].astype(np.int64)
    for i in range(1, b.shape[0]):
        out |= b[i].astype(np.int64) << (8 * i)
    return out


def _ctx_encode(tokens: np.ndarray, bits: int, params: EntropyParams) -> bytes:
    T, H, W = tokens.shape
    enc = constriction.stream.queue.RangeEncoder()
    if tokens.size:

        def code(prob, x):
            enc.encode(x, _BERNOULLI, prob)
            return x

        _walk(bits, H, W, T, params, code, frames_in=tokens)
    return enc.get_compressed().astype("<u4", copy=False).tobytes()


def _min_payload_bits(n_decisions: int, params: EntropyParams) -> int:
    """A lower bound on the coded size: no decision costs less than
    -log2(1 - 2**-B) > 2**-B * log2(e) bits; we require only half of that."""
    return (n_decisions >> params.prob_bits) // 2 - 64


def _ctx_decode(data: memoryview, shape, bits: int, params: EntropyParams) -> np.ndarray:
    T, H, W = shape
    n = T * H * W
    if len(data) % 4:
        raise EntropyError(f"payload of {len(data)} bytes is not a whole number of 32-bit words")
    if 8 * len(data) < _min_payload_bits(n * bits, params):
        raise EntropyError(f"payload of {len(data)} bytes is too short for {shape} x {bits} bits")
    out = np.zeros(shape, np.int64)
    if n == 0:
        if len(data):
            raise EntropyError("payload for an empty chunk must be empty")
        return out
    if not len(data):  # the range coder emits at least one word for any decision
        raise EntropyError("empty payload for a non-empty chunk")
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def code(prob, x):
        try:
            return dec.decode(_BERNOULLI, prob)
        except Exception as e:  # constriction reports undecodable data this way
            raise EntropyError(f"entropy decoding failed: {e}") from None

    _walk(bits, H, W, T, params, code, frames_out=out)
    if not dec.maybe_exhausted():
        raise EntropyError("payload has data after the last token")
    return out
