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
       then for s = 2^(L-1), ..., 2, 1 two phases that refine the lattice of
       spacing 2s to spacing s: "d" = (s, s) mod 2s, whose 4 diagonal
       neighbours at distance s are decoded; then "hv" = (0, s) and (s, 0)
       mod 2s together, whose 4 axis neighbours at distance s are decoded.
       Frame 0 of a chunk (no previous frame) uses L = 2; later frames use
       L = 2, or L = 1 when H * W <= 512 (small frames learn their tables
       faster with fewer, larger phases).
     * Within a phase, positions are in row-major order (for "hv": the
       points (y, x) of the s-lattice with y/s + x/s odd, row by row). Each
       phase is one constriction call over K x (positions in the phase)
       decisions, except while its probability table is young (it has coded
       fewer than ``warmup`` decisions per bit plane): then each call takes
       the next max(16, 2 * n) positions of the phase (or the rest of it),
       n being the decisions per plane the table has coded so far (plus 32
       for a table that starts from a prior), so that the counts adapt
       within the first frames of the chunk. A call's
       decisions are in position order, the K planes of a position
       together, least significant first.

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
       when content moves, many bits of a token change together), and
       r = whether the same bit changed from frame t-2 to frame t-1 (0 for
       t = 1; trained tokenizers' tokens flicker: a bit that just changed
       tends to change back).
       So 5 x 2 = 10 contexts per plane for "base" (a + 5 r) and
       5 x 5 x 3 x 2 = 150 for the others (a + 5 c + 25 f + 75 r).

     The choice was measured on structured synthetic chunks (see
     ``bench/entropy_speed.py``): the "changed" decision with per-plane
     counts carries most of the gain; the pyramid order gives frame 0 (and
     so short chunks) its spatial context; c and f pay off where changes are
     spatially coherent (moving regions); warm-up bands and the shared
     back-off estimate below cut the cost of learning, which dominates short
     chunks.

2 -- model 1 in fewer coder calls (the default since container 1.2, for levels
     without a context net since 1.4). The same
     steps, decision order, contexts, counts, probabilities and priors as
     model 1; what differs is what a constriction call codes. Bit planes
     3g, 3g+1, 3g+2 of a token form symbol g (G = ceil(K / 3) symbols per
     token), value b0 + 2 b1 + 4 b2 of the three decisions (a plane at or
     beyond K is a 0 decision, surely), coded with constriction's
     ``Categorical(perfect=False)`` model over 8 values whose probabilities
     are the products of the planes' binary probabilities:
     ``P(v) = prod_i (p_i if bit i of v else 2**B - p_i) * 2**-B`` with p_i
     the plane's integer p1 below (2**B for the 0 of a plane beyond K).
     A step's symbols are in position order, a position's G symbols
     together, g ascending. The coded size is within 0.1% of model 1's (the
     same probabilities), decoding takes about half the time: constriction
     spends ~11 ns per decision in 8-ary symbols against ~24 ns in binary
     ones, and the per-decision context work is compiled
     (``bitstream/kernels.py``, numba) instead of numpy.

3 -- a learned context net (the default where the prior has one, since
     container 1.4): every token is one symbol of constriction's
     ``Categorical`` model over its 2**K values (K <= 8), whose probabilities
     an integer network computes from the decoded neighbouring tokens of the
     same and the two previous frames, in wavefront order. The net is trained
     on a tokenizer's tokens and ships inside its prior (``EntropyPrior.net``).
     A chunk's payload starts with a little-endian u32 that says how the rest
     is coded: 0 by the net, 1 by model 2 with the prior's counts and the
     params' other fields. The encoder codes both ways and keeps the shorter:
     the net is fixed while the counts adapt to the chunk, which wins where
     the net's training video is unlike the chunk (a static test card:
     0.32 against 0.44 bits/token). Normative text for the net: the module
     docstring of ``bitstream/context_net.py``.

4 -- a chain of context nets for tokens of more bits than one net codes
     (written since container 1.6, where the model's prior has them): the
     prior's ``net`` codes the low L0 = ``net.bits`` bits of every token of
     the chunk (``token & (2**L0 - 1)``) exactly as model 3 codes L0-bit
     tokens, then each of its ``high_nets`` in turn codes the next bits the
     same way (net n: bits S .. S + K_n - 1 of the token, ``token >> S``,
     S = ``side_bits`` = the bits of the nets before it), its side tokens
     being the S bits below, already coded for the whole chunk; all in one
     range coder stream. A level of the default tokenizer keeps the first
     channels of the next, so the low 6 bits of its 12-bit level are its
     6-bit level's token, and each net codes the same bits at every level
     that has them. The payload starts with a u32 selector as in model 3: 0
     by the nets, 1 by model 2 with the prior's counts for K bits. (The
     1.6 files of the twenty-eighth session have two nets: 12-bit tokens.)

Bit-exactness. The probabilities the coder sees are computed from integer
counts only, identically by encoder and decoder:

  counts c0, c1 per context, in half units, start at 1, 1 (a uniform prior)
  or, when the params name an `EntropyPrior`, at the prior's integer counts
  for that table (fitted on a tokenizer's training tokens and shipped with
  it: a chunk's tables start from what that tokenizer's tokens usually look
  like), and grow by 2 per decision; when c0 + c1 > ``count_limit`` both are
  halved, rounding up. With S0, S1 the sums of the same context's counts
  over the K planes and over the tables of its group (the non-base tables
  of one frame type share a group, each base table is its own), a shared
  estimate that young per-plane contexts back off to,
      q  = (S1 << B) // (S0 + S1)
      p1 = ((c1 << B) + m * q) // (c0 + c1 + m),   clipped to [1, 2^B - 1]
  with B = ``prob_bits`` and m = ``backoff``; a table's probabilities are
  recomputed before each of its own calls, from the counts as they are
  then. The coder receives
  ``p1 * 2**-B``, a dyadic float64 that is exact; constriction then maps it
  to its own fixed-point model with deterministic integer code. Model 2's
  products of three such numbers (at most 48 significant bits) are exact
  in float64 too, and constriction's quantisation of them is deterministic. Counts are
  updated with ``np.bincount`` after every vectorised step. There is no
  float arithmetic (no exp, log, accumulation) anywhere in the model and no
  threading, so the bytes are identical on every machine and thread count.

This module knows about token grids and bytes only (no torch, no pixels).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import constriction
import numpy as np

from . import kernels as _kernels
from .context_net import ContextNet, code_chunk

__all__ = ["EntropyError", "EntropyParams", "EntropyPrior", "encode_tokens", "decode_tokens", "fit_prior", "MAX_BITS"]

MAX_BITS = 30

# `perfect` is given explicitly: its default changed between constriction
# versions, and it selects the fixed-point model, so it is part of the format.
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)

_INTRA_LEVELS = 2
_INTER_LEVELS = 2

_N4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DG = ((-1, -1), (-1, 1), (1, -1), (1, 1))

_C_INTRA = 9  # sum of 4 neighbour signs + 4
_C_INTER_BASE = 10  # a + 5 r
_C_INTER = 150  # a + 5 c + 25 f + 75 r


class EntropyError(ValueError):
    """Corrupt, truncated or inconsistent entropy-coded data."""


@dataclass(frozen=True)
class EntropyParams:
    """Entropy-model id and parameters, as stored in the ``.tok`` header.

    model_id:    0 = raw bit-packing, 1 = context model, 2 = the same context
                 model coded as 8-ary symbols, about twice as fast, 3 = the
                 prior's learned context net, 4 = the prior's chain of nets,
                 low bits first (see the module docstring).
    prob_bits:   B, precision of the probabilities given to the coder (8..16).
    count_limit: c0 + c1 (half units) above which a context's counts halve;
                 sets how fast the model forgets (16..2**20).
    backoff:     m, weight (half units) of the shared estimate (all planes,
                 all tables of a group) in a plane's probability (0..2**16).
    warmup:      a phase is coded in steps of max(16, 2 n) positions (n: the
                 decisions per bit plane its table has coded) while n is
                 below ``warmup`` (0..2**16), so that young counts adapt early.
    prior:       0, or the `EntropyPrior.id` of the prior whose counts the
                 tables start from instead of (1, 1) (models 1 and 2). The
                 decoder needs the same prior; it ships with the tokenizer.
    """

    model_id: int = 2
    prob_bits: int = 15
    count_limit: int = 8192
    backoff: int = 128
    warmup: int = 1024
    prior: int = 0

    @classmethod
    def for_encoding(cls, prior: "EntropyPrior | None", frame_tokens: int, net: bool = True) -> "EntropyParams":
        """The params `tokcodec encode` codes with: the prior's context net
        (model 3) when it has one (and `net`), or its chain of nets (model 4)
        when it has one; else the context model,
        starting from `prior` when there is one. Small frames (at most 512 tokens per
        latent frame, e.g. 176x144 video at 8x8) that start from a prior skip
        the warm-up steps (warmup 0): there the steps buy 0.03% of the bits and
        cost 7% of the decoding speed, while on large frames, whose content a
        prior may fit badly, they save up to 4% (bench/RESULTS.md)."""
        if prior is None:
            return cls()
        model_id = 2 if not net or prior.net is None else 4 if prior.high_nets else 3
        return cls(model_id, prior=prior.id, warmup=0 if frame_tokens <= _SMALL else cls.warmup)

    def check(self, error: type[Exception] = ValueError) -> None:
        ranges = {
            "model_id": (0, 4),
            "prob_bits": (8, 16),
            "count_limit": (16, 1 << 20),
            "backoff": (0, 1 << 16),
            "warmup": (0, 1 << 16),
            "prior": (0, (1 << 32) - 1),
        }
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
                raise error(f"entropy params: {name}={v!r} is not an integer in [{lo}, {hi}]")


# ---------------------------------------------------------------------------
# public API


def encode_tokens(
    tokens: np.ndarray, bits: int, params: EntropyParams = EntropyParams(), prior: "EntropyPrior | None" = None
) -> bytes:
    """Code one chunk of tokens, shape (T, H, W), values in [0, 2**bits), to bytes.

    `prior` must be the prior that `params.prior` names (None when it is 0).
    """
    bits = _check_bits(bits, ValueError)
    _check_params(params, ValueError)
    tables = _prior_tables(params, prior, bits, ValueError)
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
    if params.model_id in (3, 4):
        by_net = _net_encode(tokens, prior)
        by_counts = _ctx_encode(tokens, bits, dataclasses.replace(params, model_id=2), tables)
        return _BY_COUNTS + by_counts if len(by_counts) < len(by_net) else _BY_NET + by_net
    return _ctx_encode(tokens, bits, params, tables)


def decode_tokens(
    data: bytes,
    shape: tuple[int, int, int],
    bits: int,
    params: EntropyParams = EntropyParams(),
    prior: "EntropyPrior | None" = None,
) -> np.ndarray:
    """Inverse of `encode_tokens`: an int64 array of the given shape.

    Raises EntropyError (a ValueError) for inconsistent input. Garbage that
    happens to be well-formed decodes to some tokens of the right shape (the
    container's CRC is what detects it).
    """
    bits = _check_bits(bits, EntropyError)
    _check_params(params, EntropyError)
    tables = _prior_tables(params, prior, bits, EntropyError)
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
    if params.model_id in (3, 4):
        how = bytes(data[:4])
        if how == _BY_NET:
            return _net_decode(data[4:], shape, prior)
        if how == _BY_COUNTS:
            return _ctx_decode(data[4:], shape, bits, dataclasses.replace(params, model_id=2), tables)
        raise EntropyError(f"entropy model {params.model_id} payload starts with neither 0 (net) nor 1 (counts)")
    return _ctx_decode(data, shape, bits, params, tables)


def _check_bits(bits, error) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise error(f"bits must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return int(bits)


def _check_params(params, error) -> None:
    if not isinstance(params, EntropyParams):
        raise error(f"params must be EntropyParams, got {type(params).__name__}")
    params.check(error)


def _prior_tables(params: EntropyParams, prior, bits: int, error) -> "Mapping[tuple, np.ndarray] | None":
    """The prior's initial counts by table key, after checking it is the one `params` names."""
    if not params.prior:
        if params.model_id in (3, 4):
            raise error(f"entropy model {params.model_id} needs a prior with a context net")
        if prior is not None:
            raise error("a prior was given but the entropy params name none")
        return None
    if params.model_id == 0:
        raise error("entropy model 0 (raw) takes no prior")
    if prior is None:
        raise error(f"these tokens are coded with entropy prior {params.prior:08x}, which was not given")
    if prior.id != params.prior:
        raise error(f"entropy prior {prior.id:08x} given, the data needs {params.prior:08x}")
    if prior.bits != bits:
        raise error(f"the entropy prior is for {prior.bits}-bit tokens, not {bits}")
    if prior.max_total() > params.count_limit:
        raise error("the entropy prior's counts exceed count_limit")
    if params.model_id == 3 and (prior.net is None or prior.high_nets):
        raise error(f"entropy prior {prior.id:08x} has no context net for whole tokens (entropy model 3)")
    if params.model_id == 4 and not prior.high_nets:
        raise error(f"entropy prior {prior.id:08x} has no chain of nets, low bits first (entropy model 4)")
    return prior.by_key


# ---------------------------------------------------------------------------
# priors: initial counts fitted on one tokenizer's tokens


def _table_contexts(key: tuple) -> int:
    """Contexts per plane of the table with this key (see the module docstring)."""
    if key[0] == "intra":
        return _C_INTRA
    return _C_INTER_BASE if key[1] == "base" else _C_INTER


def _table_key(name: str) -> tuple:
    """'inter/0/d' -> ('inter', 0, 'd'); raises ValueError for a name no table has."""
    parts = name.split("/")
    key = tuple(int(p) if p.isdigit() else p for p in parts)
    kinds = {("intra", "base"), ("inter", "base")}
    ok = key in kinds or (len(key) == 3 and key[0] in ("intra", "inter") and isinstance(key[1], int)
                          and 0 <= key[1] < max(_INTRA_LEVELS, _INTER_LEVELS) and key[2] in ("d", "hv"))
    if not ok:
        raise ValueError(f"no context table is named {name!r}")
    return key


_NET = "net/"  # prefix of the context net's arrays in a prior's .npz
_HIGH_NET = "high"  # ... and of model 4's nets above it: "high/", "high2/", ...
_PRIOR_MAX = 1 << 15  # largest initial count (half units) a prior may hold
_PRIOR_CODED = 32  # decisions per plane a table starting from a prior counts as coded (warm-up)


@dataclass(frozen=True, eq=False)
class EntropyPrior:
    """Initial counts of the context model's tables (models 1 and 2), fitted on
    tokens, and optionally the context net of model 3 (`ContextNet`, trained
    on tokens of the same tokenizer), or the chain of nets of model 4: `net`
    for the low ``net.bits`` bits, then each of `high_nets` for the bits
    above the ones before it, given them (its side tokens).

    A tokenizer's tokens have statistics that a short chunk cannot learn from
    scratch: its tables starting from counts fitted on training tokens save
    bits where the chunk's own counts are still young. ``tables`` maps a
    table name (``"intra/base"``, ``"inter/0/d"``, ...) to its (2, K * C)
    counts c0, c1 in half units, each in [1, 2**15]. ``id`` (32 bits, never
    0) is what the ``.tok`` header stores to name it.
    """

    bits: int
    tables: Mapping[str, np.ndarray]
    net: ContextNet | None = None
    high_nets: tuple[ContextNet, ...] = ()

    def __post_init__(self) -> None:
        _check_bits(self.bits, ValueError)
        if isinstance(self.high_nets, ContextNet) or not all(isinstance(n, ContextNet) for n in self.high_nets):
            raise TypeError("high_nets must be a sequence of ContextNets")
        object.__setattr__(self, "high_nets", tuple(self.high_nets))
        if self.net is not None and self.net.side_bits:
            raise ValueError("the prior's (low bits') context net takes no side tokens")
        if not self.high_nets:
            if self.net is not None and self.net.bits != self.bits:
                raise ValueError(f"the prior's context net is for {self.net.bits}-bit tokens, not {self.bits}")
        else:
            below = 0 if self.net is None else self.net.bits
            for high in self.high_nets:
                if self.net is None or high.side_bits != below:
                    raise ValueError(f"the prior's nets must each code the {self.bits}-bit tokens' bits above the "
                                     "nets' before it, with those bits as side tokens")
                below += high.bits
            if below != self.bits:
                raise ValueError(f"the prior's nets code {below} bits of its {self.bits}-bit tokens")
        by_key = {}
        for name, counts in self.tables.items():
            key = _table_key(name)
            counts = np.asarray(counts)
            shape = (2, self.bits * _table_contexts(key))
            if counts.shape != shape or not np.issubdtype(counts.dtype, np.integer):
                raise ValueError(f"prior table {name!r} must be integers of shape {shape}")
            if counts.min() < 1 or counts.max() > _PRIOR_MAX:
                raise ValueError(f"prior table {name!r} has counts outside [1, {_PRIOR_MAX}]")
            by_key[key] = counts.astype(np.int64)
            by_key[key].flags.writeable = False
        object.__setattr__(self, "by_key", by_key)

    @functools.cached_property
    def id(self) -> int:
        h = hashlib.sha256(b"tokcodec-prior-1 %d" % self.bits)
        for name in sorted(self.tables):
            h.update(name.encode() + b"\0")
            h.update(self.by_key[_table_key(name)].astype("<i4").tobytes())
        if self.net is not None:  # priors without a net keep the ids they had before nets existed
            h.update(self.net.digest)
        for prefix, high in zip(_high_prefixes(), self.high_nets):
            h.update(prefix[:-1].encode() + b"\0" + high.digest)  # b"high\0", b"high2\0", ...
        return int.from_bytes(h.digest()[:4], "little") or 1

    @property
    def nets(self) -> tuple[ContextNet, ...]:
        """The nets that code tokens under this prior, in coding order: none,
        model 3's net, or model 4's chain (the low bits' net, then each net
        coding the bits above the ones before it)."""
        return (self.net,) + self.high_nets if self.net is not None else ()

    def max_total(self) -> int:
        """The largest c0 + c1 of any context."""
        return max((int((c[0] + c[1]).max()) for c in self.by_key.values()), default=0)

    def save(self, path: str | os.PathLike) -> None:
        """Write the prior as an .npz file (int32 arrays, one per table, ``bits``,
        the net's arrays named ``net/...`` and model 4's nets above it
        ``high/...``, ``high2/...``, ...)."""
        arrays = {name: np.asarray(c, np.int32) for name, c in self.tables.items()}
        for prefix, net in zip((_NET,) + _high_prefixes(), self.nets):
            arrays.update({prefix + name: a for name, a in net.arrays().items()})
        with open(path, "wb") as f:
            np.savez_compressed(f, bits=np.int32(self.bits), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EntropyPrior":
        """Read a prior written by `save`; raises ValueError if it is malformed."""
        try:
            with np.load(path, allow_pickle=False) as z:
                bits = int(z["bits"])
                prefixes = (_NET,) + _high_prefixes()
                nets = [{name[len(p):]: z[name] for name in z.files if name.startswith(p)} for p in prefixes]
                tables = {name: z[name] for name in z.files
                          if name != "bits" and not any(name.startswith(p) for p in prefixes)}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not an entropy prior ({exc})") from None
        try:
            nets = nets[:next((i for i, n in enumerate(nets) if not n), len(nets))]
            # a net's bits: up to the next net's side bits (the last one's: up to the prior's bits)
            ends = [int(n["side_bits"]) for n in nets[1:]] + [bits]
            starts = [0] + ends[:-1]
            chain = [ContextNet.from_arrays(end - start, n) for n, start, end in zip(nets, starts, ends)]
            return cls(bits, tables, chain[0] if chain else None, tuple(chain[1:]))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}: {exc}") from None


@functools.lru_cache(maxsize=1)
def _high_prefixes() -> tuple[str, ...]:
    """The .npz prefixes of model 4's nets above the low bits' net, in coding order."""
    return tuple(f"{_HIGH_NET}{'' if i == 1 else i}/" for i in range(1, MAX_BITS + 1))


def fit_prior(chunks: Iterable[np.ndarray], bits: int, weight: int = 128) -> EntropyPrior:
    """Fit a prior on token chunks (each (T, H, W), coded as `encode_tokens` would).

    Every table's counts are summed over the chunks and scaled so that no
    context holds more than `weight` half units (the prior is then worth at
    most `weight / 2` decisions: enough to start well, little enough to
    adapt). Contexts the chunks never reached keep the uniform (1, 1).
    """
    bits = _check_bits(bits, ValueError)
    if not 4 <= weight <= _PRIOR_MAX:
        raise ValueError(f"weight must be in [4, {_PRIOR_MAX}]")
    # Counts grow without halving (count_limit at its maximum), so they are plain sums.
    params = EntropyParams(count_limit=1 << 20, backoff=0)
    sums: dict[tuple, np.ndarray] = {}
    for chunk in chunks:
        chunk = np.asarray(chunk, np.int64)
        T, H, W = chunk.shape
        if chunk.size == 0:
            continue
        tables = _walk(bits, H, W, T, params, lambda prob, x: x, frames_in=chunk)
        for key, tab in tables.items():
            sums[key] = sums.get(key, 0) + (tab.counts - 1)
    out = {}
    for key, c in sums.items():
        # 1 + the counts (the uniform start plus the evidence), the evidence
        # scaled down where it exceeds weight - 2, so that c0 + c1 <= weight
        n = c.sum(axis=0)
        scale = np.minimum(1.0, (weight - 2) / np.maximum(n, 1))
        out["/".join(map(str, key))] = (1 + np.floor(c * scale)).astype(np.int32)
    return EntropyPrior(bits, out)


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


_MINBAND = 16  # warm-up: the smallest step, in positions
_GROW = 2  # warm-up: a step has GROW x as many positions as the table has coded
_SMALL = 512  # frames of at most this many tokens use one inter level


def _levels(H: int, W: int) -> tuple[int, int]:
    """(pyramid levels of frame 0, of later frames) for an H x W frame."""
    return _INTRA_LEVELS, (1 if H * W <= _SMALL else _INTER_LEVELS)


def _lattice(H, W, pad, s, odd_i, odd_j=None):
    """Flat padded indices (row-major) of the s-lattice points (i s, j s) with
    i odd == odd_i and j odd == odd_j; with odd_j None, i + j odd; with odd_i
    None, all."""
    yy, xx = np.meshgrid(np.arange(0, H, s), np.arange(0, W, s), indexing="ij")
    i, j = yy // s, xx // s
    if odd_i is None:
        m = np.ones(i.shape, bool)
    elif odd_j is None:
        m = ((i + j) & 1) == 1
    else:
        m = ((i & 1) == odd_i) & ((j & 1) == odd_j)
    return yy[m], xx[m]


@functools.lru_cache(maxsize=32)
def _plan(H: int, W: int, levels: int, pad: int):
    """Phases of one frame in coding order: (table key, start, stop, neighbour
    index array (4, n) or None) and the concatenated positions `order`
    (flat indices into the padded grid) and `order_in` (into the frame)."""
    Wp = W + 2 * pad
    phases, ys, xs = [], [], []
    S = 1 << levels
    yy, xx = _lattice(H, W, pad, S, None)
    specs = [(("base",), yy, xx, ())]
    for lev in reversed(range(levels)):
        s = 1 << lev
        yy, xx = _lattice(H, W, pad, s, 1, 1)
        specs.append(((lev, "d"), yy, xx, _DG))
        yy, xx = _lattice(H, W, pad, s, 0)
        specs.append(((lev, "hv"), yy, xx, _N4))
    n0 = 0
    for key, yy, xx, offs in specs:
        n = yy.size
        if n == 0:
            continue
        s = 1 << key[0] if offs else 0
        nb = None
        if offs:
            nb = np.stack([(yy + pad + dy * s) * Wp + (xx + pad + dx * s) for dy, dx in offs]).astype(np.intp)
        phases.append((key, n0, n0 + n, nb))
        ys.append(yy)
        xs.append(xx)
        n0 += n
    yy, xx = np.concatenate(ys), np.concatenate(xs)
    order = ((yy + pad) * Wp + xx + pad).astype(np.intp)
    order_in = (yy * W + xx).astype(np.intp)
    for a in (order, order_in):
        a.flags.writeable = False
    return tuple(phases), order, order_in


class _Group:
    """Tables whose contexts mean the same thing; ``sum`` is their counts
    summed over planes and tables, (2, C)."""

    __slots__ = ("sum",)

    def __init__(self, C: int):
        self.sum = np.zeros((2, C), np.int64)


class _Table:
    """Adaptive counts for K planes x C contexts, and their probabilities.

    A decision's context index is ``ctx = context + C * plane``; ``prob[ctx]``
    is its probability and ``counts[decision, ctx]`` its counts (so the flat
    count index is ``ctx + K * C * decision``).
    """

    __slots__ = ("K", "C", "KC", "counts", "flat", "c0", "c1", "plane_sum", "prob", "coded", "group",
                 "bound", "B", "m", "lim", "clip", "scale", "p1")

    def __init__(self, K: int, C: int, params: EntropyParams, group: _Group, init=None):
        self.K, self.C, self.KC, self.group = K, C, K * C, group
        self.B, self.m, self.lim = params.prob_bits, params.backoff, params.count_limit
        self.clip = self.lim + self.m > 1 << self.B
        self.scale = 1.0 / (1 << self.B)
        self.counts = np.ones((2, K * C), np.int64) if init is None else np.array(init, np.int64)
        self.flat = self.counts.reshape(-1)
        self.c0, self.c1 = self.counts
        self.plane_sum = self.counts.reshape(2, K, C).sum(axis=1)
        group.sum += self.plane_sum
        self.bound = int((self.counts[0] + self.counts[1]).max())  # an upper bound on max(c0 + c1)
        # a table that starts from a prior counts as having coded PRIOR_CODED
        # decisions per plane, so its warm-up steps start larger (fewer calls)
        self.coded = 0 if init is None else _PRIOR_CODED * K
        self.prob = np.empty(K * C, np.float64)
        self.p1 = np.empty(K * C, np.int64)  # model 2: integer probabilities

    def refresh(self) -> None:
        B, m = self.B, self.m
        p = self.c1 << B
        n = self.c0 + self.c1
        if m:
            s0, s1 = self.group.sum
            q = s1 << B
            q //= s0 + s1
            q *= m
            p = p.reshape(self.K, self.C)
            p += q
            n += m
            p = p.reshape(-1)
        p //= n
        # p <= 2**B - 1 always (c0 >= 1, q < 2**B); p >= 1 needs c0 + c1 + m
        # <= 2**B, which count_limit + m <= 2**B guarantees (counts are halved
        # back to at most count_limit before any refresh)
        if self.clip:
            np.maximum(p, 1, out=p)
        # p < 2**16 times 2**-B: an exact float64
        np.multiply(p, self.scale, out=self.prob)

    def update(self, idx: np.ndarray, x: np.ndarray, npos: int) -> None:
        """idx: the context index of every decision just coded, x: the
        decisions, at npos positions (so no context got more than npos)."""
        ci = x * self.KC
        ci += idx
        bc = np.bincount(ci, minlength=self.flat.size)
        c = self.flat
        c += bc
        c += bc
        self.bound += 2 * npos
        if self.bound > self.lim:
            cc = self.counts
            n = self.c0 + self.c1
            top = n.max()
            while top > self.lim:
                big = n > self.lim
                cc[:, big] = (cc[:, big] + 1) >> 1
                n = self.c0 + self.c1
                top = n.max()
            self.bound = int(top)
        ps = np.add.reduce(self.counts.reshape(2, self.K, self.C), axis=1)
        s = self.group.sum
        s -= self.plane_sum
        s += ps
        self.plane_sum = ps
        self.coded += idx.size

    # model 2: the same arithmetic, compiled (bitstream/kernels.py)

    def refresh_int(self) -> None:
        _kernels.probabilities(self.counts, self.group.sum, self.K, self.C, self.B, self.m, self.p1)

    def update_compiled(self, idx: np.ndarray, x: np.ndarray, npos: int) -> None:
        self.bound = _kernels.update_counts(self.counts, idx, x, self.KC, self.lim, self.bound, npos)
        s = self.group.sum
        s -= self.plane_sum
        _kernels.plane_sums(self.counts, self.K, self.C, self.plane_sum)
        s += self.plane_sum
        self.coded += idx.size


class _Tables:
    """A chunk's tables by key, made on first use (from the prior's counts
    when there is one), each in its group: the non-base tables of a frame
    type share one, each base table has its own."""

    def __init__(self, K: int, params: EntropyParams, prior):
        self.K, self.params, self.prior = K, params, prior
        self.tables: dict = {}
        self.groups: dict = {}

    def get(self, key: tuple, C: int) -> _Table:
        tab = self.tables.get(key)
        if tab is None:
            gk = (key[0], key[1] == "base")
            group = self.groups.get(gk)
            if group is None:
                group = self.groups[gk] = _Group(C)
            init = None if self.prior is None else self.prior.get(key)
            tab = self.tables[key] = _Table(self.K, C, self.params, group, init)
        return tab


def _walk(K, H, W, T, params, code, frames_in=None, frames_out=None, prior=None):
    """Visit every decision of a chunk in coding order (shared by both sides).

    ``code(prob, decisions)`` codes one vectorised step: the encoder passes the
    decisions (int32), the decoder passes None and gets the decoded ones. Encoder: ``frames_in[t]`` is frame t's tokens. Decoder:
    ``frames_out[t]`` receives them. ``prior`` maps table keys to initial
    counts. Returns the tables (their final counts fit priors).
    """
    li, lp = _levels(H, W)
    pad = 1 << (max(li, lp) - 1)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    inner = (slice(pad, pad + H), slice(pad, pad + W))
    bufs = [np.zeros((Hp, Wp, K), np.int8) for _ in range(3)]  # signs, 0 outside
    changed = np.zeros(Hp * Wp, np.int16)  # bits changed per token (frame t)
    plane = np.arange(K, dtype=np.intp)
    off_intra = _C_INTRA * plane + 4  # + sum of neighbour signs
    off_base = _C_INTER_BASE * plane
    off_inter = _C_INTER * plane
    lut_c = np.zeros(9, np.intp)  # 5 c, indexed by (sum of signs * P) mod 9
    for v in range(-4, 5):
        lut_c[v] = 5 * ((v + 4) >> 1)
    ns = np.arange(4 * K + 1)
    lut_f = 25 * ((ns > 0).astype(np.intp) + (4 * ns > K))
    warm = params.warmup * K
    add_reduce = np.add.reduce
    sign_lut = np.array([-1, 1], np.int8)  # decoder, frame 0: bit -> sign
    flip_lut = np.array([1, -1], np.int8)  # later frames: changed -> sign flip
    decoding = frames_in is None
    tables = _Tables(K, params, prior)
    table = tables.get

    for t in range(T):
        prev, cur = bufs[(t + 2) % 3], bufs[t % 3]
        prevf, curf = prev.reshape(-1, K), cur.reshape(-1, K)
        phases, order, order_in = _plan(H, W, lp if t else li, pad)
        if not decoding:
            cur[inner] = _token_signs(frames_in[t], K)
            S = curf[order]
        if t:
            npv = (prev[pad - 1:pad - 1 + H, pad:pad + W] + prev[pad + 1:pad + 1 + H, pad:pad + W]
                   + prev[pad:pad + H, pad - 1:pad - 1 + W] + prev[pad:pad + H, pad + 1:pad + 1 + W])
            npv *= prev[inner]
            npv += 4
            npv >>= 1  # a, 0..4
            a2 = npv.reshape(-1, K)[order_in]  # a, (positions in coding order, K)
            P = prevf[order]
            if t > 1:  # r: the bit changed from frame t-2 to t-1
                r = (bufs[(t + 1) % 3].reshape(-1, K)[order] != P).astype(np.intp)
            else:
                r = np.zeros(P.shape, np.intp)
            a2 = a2 + _C_INTER_BASE // 2 * r  # a + 5 r: the base contexts
            if not decoding:
                Xi = (S != P).astype(np.int32)
                changed.reshape(Hp, Wp)[inner] = (cur[inner] != prev[inner]).sum(axis=2, dtype=np.int16)
        elif not decoding:
            Xi = (S > 0).astype(np.int32)
        for key, p0, p1, nb in phases:
            if t:
                if nb is None:
                    tab = table(("inter",) + key, _C_INTER_BASE)
                    base = a2[p0:p1] + off_base
                else:
                    tab = table(("inter",) + key, _C_INTER)
                    base = a2[p0:p1] + off_inter + 70 * r[p0:p1]  # a + 75 r
            else:
                tab = table(("intra",) + key, _C_INTRA)
            s0 = p0
            while s0 < p1:
                if tab.coded < warm:
                    s1 = min(p1, s0 + max(_MINBAND, _GROW * (tab.coded // K)))
                else:
                    s1 = p1
                n = s1 - s0
                if nb is not None:
                    nbb = nb[:, s0 - p0:s1 - p0]
                    cs = add_reduce(curf[nbb], axis=0, dtype=np.int8)  # (n, K), -4..4
                if t == 0:
                    if nb is not None:
                        idx = cs + off_intra
                    else:
                        idx = np.broadcast_to(off_intra, (n, K))
                else:
                    Pv = P[s0:s1]
                    if nb is not None:
                        cs *= Pv
                        idx = lut_c.take(cs)
                        idx += base[s0 - p0:s1 - p0]
                        idx += lut_f.take(add_reduce(changed[nbb], axis=0))[:, None]
                    else:
                        idx = base[s0 - p0:s1 - p0]
                idx = idx.reshape(-1)
                tab.refresh()
                prob = tab.prob.take(idx)
                if decoding:
                    x = code(prob, None)
                    pos = order[s0:s1]
                    if t == 0:
                        curf[pos] = sign_lut.take(x).reshape(n, K)
                    else:
                        v = flip_lut.take(x).reshape(n, K)
                        v *= Pv
                        curf[pos] = v  # -P where the bit changed
                        changed[pos] = add_reduce(x.reshape(n, K), axis=1)
                else:
                    x = Xi[s0:s1].reshape(-1)
                    code(prob, x)
                tab.update(idx, x, n)
                s0 = s1
        if decoding:
            frames_out[t] = _signs_token(cur[inner], K)
    return tables.tables


@functools.lru_cache(maxsize=32)
def _plan2(H: int, W: int, levels: int, pad: int):
    """`_plan` for model 2's kernels: neighbour arrays (n, 4), C-contiguous."""
    phases, order, _ = _plan(H, W, levels, pad)
    return tuple((key, p0, p1, None if nb is None else np.ascontiguousarray(nb.T)) for key, p0, p1, nb in phases), order


def _walk2(K, H, W, T, params, code, frames_in=None, frames_out=None, prior=None):
    """Model 2: `_walk`'s decisions, contexts and counts, coded as one 8-ary
    symbol per 3 bit planes of a token (bitstream/kernels.py does the work).

    ``code(joint, symbols)`` codes one step: joint (n * G, 8) probabilities;
    the encoder passes the symbols (int32), the decoder None and gets them.
    """
    li, lp = _levels(H, W)
    pad = 1 << (max(li, lp) - 1)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    inner = (slice(pad, pad + H), slice(pad, pad + W))
    bufs = np.zeros((3, Hp * Wp, K), np.int8)  # signs of frames t mod 3, 0 outside
    changed = np.zeros(Hp * Wp, np.int16)  # bits changed per token (frame t)
    ns = np.arange(4 * K + 1)
    lut_f = (25 * ((ns > 0).astype(np.int64) + (4 * ns > K))).astype(np.int64)
    G = -(-K // _kernels.GROUP)
    no_nb = np.zeros((0, 4), np.intp)
    warm = params.warmup * K
    decoding = frames_in is None
    tables = _Tables(K, params, prior)
    table = tables.get

    for t in range(T):
        prev, cur, prev2 = bufs[(t + 2) % 3], bufs[t % 3], bufs[(t + 1) % 3]
        phases, order = _plan2(H, W, lp if t else li, pad)
        if not decoding:
            cur.reshape(Hp, Wp, K)[inner] = _token_signs(frames_in[t], K)
            if t:
                changed[:] = (cur != prev).sum(axis=1, dtype=np.int16)
        for key, p0, p1, nb in phases:
            if t == 0:
                kind, tab = _kernels.INTRA, table(("intra",) + key, _C_INTRA)
            elif nb is None:
                kind, tab = _kernels.INTER_BASE, table(("inter",) + key, _C_INTER_BASE)
            else:
                kind, tab = _kernels.INTER, table(("inter",) + key, _C_INTER)
            s0 = p0
            while s0 < p1:
                s1 = min(p1, s0 + max(_MINBAND, _GROW * (tab.coded // K))) if tab.coded < warm else p1
                n = s1 - s0
                pos = order[s0:s1]
                nbs = no_nb if nb is None else nb[s0 - p0:s1 - p0]
                tab.refresh_int()
                idx = np.empty(n * K, np.int64)
                joint = np.empty((n * G, _kernels.SYMBOLS), np.float64)
                _kernels.step_probabilities(kind, t > 1, pos, nbs, prev, prev2, cur, changed, Wp, K, tab.C,
                                            tab.p1, tab.B, lut_f, idx, joint)
                x = np.empty(n * K, np.int64)
                if decoding:
                    sym = code(joint, None)
                    _kernels.apply_symbols(kind, pos, sym, prev, cur, changed, K, x)
                else:
                    sym = np.empty(n * G, np.int32)
                    _kernels.symbols_of(kind, pos, prev, cur, K, x, sym)
                    code(joint, sym)
                tab.update_compiled(idx, x, n)
                s0 = s1
        if decoding:
            frames_out[t] = _signs_token(cur.reshape(Hp, Wp, K)[inner], K)
    return tables.tables


def _token_signs(frame: np.ndarray, K: int) -> np.ndarray:
    """(H, W) tokens -> (H, W, K) int8 signs (+1 for a 1 bit, -1 for 0)."""
    H, W = frame.shape
    b = np.unpackbits(frame.astype("<u4").view(np.uint8).reshape(H, W, 4), axis=2, bitorder="little")
    s = b[:, :, :K].view(np.int8) * 2
    s -= 1
    return s


def _signs_token(s: np.ndarray, K: int) -> np.ndarray:
    """Inverse of _token_signs."""
    H, W = s.shape[:2]
    b = np.zeros((H, W, 4), np.uint8)
    b[:, :, : (K + 7) // 8] = np.packbits(s > 0, axis=2, bitorder="little")
    return b.view("<u4")[:, :, 0].astype(np.int64)


_BY_NET, _BY_COUNTS = (0).to_bytes(4, "little"), (1).to_bytes(4, "little")  # models 3 and 4's payload selector


def _net_encode(tokens: np.ndarray, prior: "EntropyPrior") -> bytes:
    enc = constriction.stream.queue.RangeEncoder()

    def code(weights, symbols):
        enc.encode(symbols.astype(np.int32), _CATEGORICAL, weights)

    if tokens.size:
        for net in prior.nets:  # a net codes the bits above its side bits (model 4's chain: the nets' before it)
            code_chunk(net, tokens.shape, code, (tokens >> net.side_bits) & ((1 << net.bits) - 1), side=tokens)
    return enc.get_compressed().astype("<u4", copy=False).tobytes()


def _net_decode(data: memoryview, shape, prior: "EntropyPrior") -> np.ndarray:
    # constriction gives each of a symbol's 2**K values at least 2**-24 (perfect=False),
    # so a symbol costs more than (2**K - 1) 2**-24 log2(e) bits; require half of that
    dec = _decoder(data, shape, (shape[0] * shape[1] * shape[2] * sum(2 ** net.bits - 1 for net in prior.nets)) >> 25)
    out = np.zeros(shape, np.int64)
    if dec is None:
        return out

    def code(weights, _):
        try:
            return dec.decode(_CATEGORICAL, weights)
        except Exception as e:  # constriction reports undecodable data this way
            raise EntropyError(f"entropy decoding failed: {e}") from None

    for net in prior.nets:  # a net of model 4's chain sees the bits decoded so far as side tokens
        out |= code_chunk(net, shape, code, side=out) << net.side_bits
    if not dec.maybe_exhausted():
        raise EntropyError("payload has data after the last token")
    return out


def _decoder(data: memoryview, shape, min_bits: int = 0) -> "constriction.stream.queue.RangeDecoder | None":
    """A range decoder over a chunk's payload (at least `min_bits` long), None
    for an (empty, checked) empty chunk."""
    if len(data) % 4:
        raise EntropyError(f"payload of {len(data)} bytes is not a whole number of 32-bit words")
    if 8 * len(data) < min_bits:
        raise EntropyError(f"payload of {len(data)} bytes is too short for {shape}")
    if shape[0] * shape[1] * shape[2] == 0:
        if len(data):
            raise EntropyError("payload for an empty chunk must be empty")
        return None
    if not len(data):  # the range coder emits at least one word for any decision
        raise EntropyError("empty payload for a non-empty chunk")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


# model id -> (walk, constriction model, bit planes per coded symbol)
_CODERS = {1: (_walk, _BERNOULLI, 1), 2: (_walk2, _CATEGORICAL, _kernels.GROUP)}


def _ctx_encode(tokens: np.ndarray, bits: int, params: EntropyParams, prior) -> bytes:
    T, H, W = tokens.shape
    walk, model, _ = _CODERS[params.model_id]
    enc = constriction.stream.queue.RangeEncoder()
    if tokens.size:

        def code(probabilities, symbols):
            enc.encode(symbols, model, probabilities)

        walk(bits, H, W, T, params, code, frames_in=tokens, prior=prior)
    return enc.get_compressed().astype("<u4", copy=False).tobytes()


def _min_payload_bits(n_decisions: int, params: EntropyParams) -> int:
    """A lower bound on the coded size: no decision costs less than
    -log2(1 - 2**-B) > 2**-B * log2(e) bits; we require only half of that."""
    return (n_decisions >> params.prob_bits) // 2 - 64


def _ctx_decode(data: memoryview, shape, bits: int, params: EntropyParams, prior) -> np.ndarray:
    T, H, W = shape
    n = T * H * W
    walk, model, planes_per_call = _CODERS[params.model_id]
    dec = _decoder(data, shape, _min_payload_bits(n * -(-bits // planes_per_call), params))  # coded decisions / symbols
    out = np.zeros(shape, np.int64)
    if dec is None:
        return out

    def code(prob, x):
        try:
            return dec.decode(model, prob)
        except Exception as e:  # constriction reports undecodable data this way
            raise EntropyError(f"entropy decoding failed: {e}") from None

    walk(bits, H, W, T, params, code, frames_out=out, prior=prior)
    if not dec.maybe_exhausted():
        raise EntropyError("payload has data after the last token")
    return out
