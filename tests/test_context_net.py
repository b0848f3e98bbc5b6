"""Entropy model 3: the learned context net (tokcodec.bitstream.context_net)."""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from tokcodec.bitstream.container import Header, TokError, TokReader, TokWriter
from tokcodec.bitstream.context_net import CURRENT, ContextNet, n_inputs, wave_order
from tokcodec.bitstream.entropy import EntropyError, EntropyParams, EntropyPrior, decode_tokens, encode_tokens, fit_prior
from tokcodec.context_net_fit import ContextNetConfig, chunk_examples, fit_context_net, int_bits

from test_entropy import structured_tokens

NET = EntropyParams(model_id=3)


def random_net(bits: int, seed: int = 0, hidden: tuple[int, int] = (16, 12), side_bits: int = 0) -> ContextNet:
    """An integer net with small random weights (a stand-in for a trained one)."""
    rng = np.random.default_rng(seed)
    sizes = (n_inputs(bits, side_bits), *hidden, 2 ** bits)
    weights = tuple(rng.integers(-40, 41, (a, b)) for a, b in zip(sizes, sizes[1:]))
    biases = tuple(rng.integers(-300, 301, b) for b in sizes[1:])
    table = np.maximum(1, np.round(2**20 * np.exp(-(np.arange(300) + 0.5) / 32))).astype(np.int64)
    return ContextNet(bits, weights, biases, (3, 5, 4), table, side_bits)


def net_prior(bits: int, net: ContextNet | None = None) -> EntropyPrior:
    return EntropyPrior(bits, fit_prior([], bits).tables, net or random_net(bits))


def round_trip(tokens: np.ndarray, prior: EntropyPrior) -> bytes:
    params = EntropyParams.for_encoding(prior, tokens.shape[1] * tokens.shape[2])
    assert params.model_id == 3
    data = encode_tokens(tokens, prior.bits, params, prior)
    assert np.array_equal(decode_tokens(data, tokens.shape, prior.bits, params, prior), tokens)
    return data


@pytest.mark.parametrize("bits", [1, 3, 6, 8])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 16), (3, 1, 17), (3, 17, 1), (4, 12, 20), (0, 4, 4), (2, 0, 3)])
def test_round_trip(bits: int, shape: tuple[int, int, int]) -> None:
    prior = net_prior(bits)
    rng = np.random.default_rng(bits)
    top = (1 << bits) - 1
    for tokens in (np.zeros(shape, np.int64), np.full(shape, top, np.int64), rng.integers(0, top, shape, endpoint=True),
                   structured_tokens(bits, *shape, bits) if min(shape) else np.zeros(shape, np.int64)):
        round_trip(tokens, prior)


def test_wave_order_decodes_every_neighbour_first() -> None:
    H, W = 7, 11
    positions, bounds, centres = wave_order(H, W)
    assert sorted(positions) == list(range(H * W))
    done = set()
    Wp = W + 4
    for d in range(len(bounds) - 1):
        lo, hi = bounds[d], bounds[d + 1]
        for p in positions[lo:hi]:
            for dy, dx in CURRENT:
                y, x = int(p) // W + dy, int(p) % W + dx
                assert not (0 <= y < H and 0 <= x < W) or y * W + x in done  # outside the frame, or decoded
        done.update(int(p) for p in positions[lo:hi])
    assert np.array_equal(centres, (positions // W + 2) * Wp + positions % W + 2)


def palette_tokens(seed: int, T: int, H: int, W: int, bits: int) -> np.ndarray:
    """Eight codes (a palette drawn per seed) laid out in smooth regions that
    move one token down and right per frame: structure across bit planes and
    frames that a net sees and per-plane counts do not."""
    rng = np.random.default_rng(seed)
    field = uniform_filter(uniform_filter(rng.standard_normal((H + T, W + T)), 5), 5)
    levels = np.digitize(field, np.quantile(field, np.linspace(0, 1, 9)[1:-1]))
    palette = rng.permutation(2**bits)[:8]
    return np.stack([palette[levels[T - t:T - t + H, T - t:T - t + W]] for t in range(T)])


def test_a_fitted_net_beats_the_counting_model_and_survives_storage(tmp_path: Path) -> None:
    bits = 4
    train = [palette_tokens(s, 5, 12, 16, bits) for s in range(20)]
    net, report = fit_context_net(train, bits, ContextNetConfig(hidden=(32, 32), steps=300, batch=512, lr=5e-3))
    assert report.tokens == 20 * 5 * 12 * 16
    assert report.int_bits < report.float_bits + 0.05  # quantising costs little
    test = palette_tokens(99, 5, 12, 16, bits)
    prior = EntropyPrior(bits, fit_prior(train, bits).tables, net)
    data = round_trip(test, prior)
    counting = len(encode_tokens(test, bits, EntropyParams(prior=prior.id), prior))
    assert data[:4] == b"\0\0\0\0" and len(data) < 0.6 * counting  # coded by the net
    # the coder's inputs are the ones the net was trained on: it spends what the net predicts
    ideal = int_bits(net, *chunk_examples(test, bits)) * test.size
    assert ideal <= 8 * (len(data) - 4) <= 1.02 * ideal + 64
    still = np.repeat(test[:1], 5, axis=0)  # a static picture: the adaptive counts win
    assert round_trip(still, prior)[:4] == (1).to_bytes(4, "little")
    prior.save(tmp_path / "p.npz")
    again = EntropyPrior.load(tmp_path / "p.npz")
    assert again.id == prior.id and again.net is not None
    params = EntropyParams(model_id=3, prior=prior.id)
    assert encode_tokens(test, bits, params, again) == encode_tokens(test, bits, params, prior)


def test_a_net_changes_the_prior_id_and_only_then() -> None:
    tables = fit_prior([structured_tokens(1, 3, 8, 8, 6)], 6).tables
    plain = EntropyPrior(6, tables)
    assert EntropyPrior(6, tables).id == plain.id
    assert net_prior(6, random_net(6, 1)).id != plain.id != EntropyPrior(6, tables, random_net(6, 2)).id


def test_model_3_needs_the_prior_with_the_net() -> None:
    tokens = structured_tokens(3, 2, 8, 8, 6)
    prior = net_prior(6)
    good = encode_tokens(tokens, 6, EntropyParams(model_id=3, prior=prior.id), prior)
    with pytest.raises(EntropyError, match="needs a prior"):
        decode_tokens(good, tokens.shape, 6, NET)
    with pytest.raises(EntropyError, match="not given"):
        decode_tokens(good, tokens.shape, 6, EntropyParams(model_id=3, prior=prior.id))
    other = net_prior(6, random_net(6, 5))
    with pytest.raises(EntropyError, match="the data needs"):
        decode_tokens(good, tokens.shape, 6, EntropyParams(model_id=3, prior=prior.id), other)
    no_net = EntropyPrior(6, prior.tables)
    with pytest.raises(EntropyError, match="no context net"):
        decode_tokens(good, tokens.shape, 6, EntropyParams(model_id=3, prior=no_net.id), no_net)
    with pytest.raises(ValueError, match="8-bit tokens, not 6"):
        EntropyPrior(6, prior.tables, random_net(8))


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(w2=a["w2"] * 1000), "2\\*\\*24"),
    (lambda a: a.update(w1=a["w1"][:-1]), "expected"),
    (lambda a: a.update(table=a["table"][::-1].copy()), "non-increasing"),
    (lambda a: a.update(shifts=np.array([3, 31, 4])), "shifts"),
    (lambda a: a.pop("b3"), "lacks array"),
])
def test_malformed_nets_are_refused(change, message, tmp_path: Path) -> None:
    arrays = random_net(6).arrays()
    change(arrays)
    with pytest.raises(ValueError, match=message):
        ContextNet.from_arrays(6, arrays)
    tables = fit_prior([], 6).tables
    np.savez(tmp_path / "bad.npz", bits=np.int32(6), **tables, **{"net/" + k: v for k, v in arrays.items()})
    with pytest.raises(ValueError, match="bad.npz"):
        EntropyPrior.load(tmp_path / "bad.npz")


def test_corrupt_payloads_give_an_error_or_tokens() -> None:
    prior = net_prior(6)
    tokens = structured_tokens(2, 4, 12, 16, 6)
    params = EntropyParams(model_id=3, prior=prior.id)
    good = encode_tokens(tokens, 6, params, prior)
    rng = np.random.default_rng(0)
    cases = [b"", b"\x00", b"\x00" * 4, b"\xff" * 64, good + b"\x00" * 4, good * 2]
    cases += [good[:n] for n in range(0, len(good), max(4, len(good) // 10))]
    for _ in range(30):
        d = bytearray(good)
        d[rng.integers(len(d))] ^= 1 << int(rng.integers(8))
        cases.append(bytes(d))
    for data in cases:
        out = _decode_or_error_with(data, tokens.shape, params, prior)
        assert out is None or out.shape == tokens.shape
    with pytest.raises(EntropyError):
        decode_tokens(b"\x00" * 64, (10**6, 10**4, 10**4), 6, params, prior)


def _decode_or_error_with(data, shape, params, prior):
    try:
        return decode_tokens(data, shape, 6, params, prior)
    except EntropyError:
        return None


def test_container_round_trip_with_the_net(tmp_path: Path) -> None:
    prior = net_prior(6)
    h = Header(model="tiny", fingerprint="0123456789abcdef", width=64, height=48, padded_width=64,
               padded_height=48, fps=Fraction(25), frames=0, chunk_frames=9, temporal_factor=4,
               spatial_factor=8, bits=6, entropy=EntropyParams(model_id=3, prior=prior.id))
    grids = [structured_tokens(s, 3, 6, 8, 6) for s in range(2)]
    with TokWriter(tmp_path / "a.tok", h, prior=prior) as w:
        for g in grids:
            w.write_chunk(9, g)
    with TokReader(tmp_path / "a.tok", prior_for=lambda header: prior) as r:
        assert r.header.entropy.model_id == 3
        assert all(np.array_equal(r.read_chunk(i).tokens, g) for i, g in enumerate(grids))
    with TokReader(tmp_path / "a.tok") as r, pytest.raises(TokError, match="entropy prior"):
        r.read_chunk(0)


_DET_SNIPPET = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_context_net import net_prior
from test_entropy import structured_tokens
from tokcodec.bitstream.entropy import EntropyParams, _net_encode, encode_tokens
prior = net_prior(6)
tokens = structured_tokens(7, 5, 20, 24, 6)
print(hashlib.sha256(encode_tokens(tokens, 6, EntropyParams(model_id=3, prior=prior.id), prior)).hexdigest())
print(hashlib.sha256(_net_encode(tokens, prior)).hexdigest())  # the net's path, whichever encode_tokens took
"""

# Model 3's output is part of the file format (see test_entropy's golden hashes).
GOLDEN_SHA256 = ("a0782f055d8f0d7399853d7513aa3f37d750fd79f3190bd58c8a8b15e7c6a5b3\n"  # encode_tokens
                 "fb6d5e63d9d89e809daac61c7b08ab091afb0feca4a4e088002590a7650e8cbe")  # the net alone


def outputs_with_1_and_2_threads(snippet: str) -> list[str]:
    """What a Python snippet (formatted with `tests`, this folder) prints, run with 1 and with 2 BLAS threads."""
    out = []
    for n in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
        res = subprocess.run([sys.executable, "-c", snippet.format(tests=str(Path(__file__).parent))], env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        out.append(res.stdout.strip())
    return out


def test_encoding_is_deterministic_across_threads() -> None:
    assert outputs_with_1_and_2_threads(_DET_SNIPPET) == [GOLDEN_SHA256] * 2
