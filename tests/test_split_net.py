"""Entropy model 4: a token's low bits coded by one context net, the bits above by a chain of nets that see them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from tokcodec.bitstream.container import VERSION, Header, TokReader, TokWriter
from tokcodec.bitstream.context_net import chunk_inputs
from tokcodec.bitstream.entropy import EntropyError, EntropyParams, EntropyPrior, decode_tokens, encode_tokens, fit_prior
from tokcodec.context_net_fit import ContextNetConfig, chunk_examples, fit_context_net, int_bits
from tokcodec.streaming.net_rate import NetRate

from test_context_net import outputs_with_1_and_2_threads, palette_tokens, random_net
from test_entropy import structured_tokens
from test_net_rate import signs_of


def split_prior(low: int, *high: int, seed: int = 0) -> EntropyPrior:
    """A prior for (low + sum(high))-bit tokens with random nets: one for the
    low bits, then one for each width in `high`, seeing the bits below it."""
    bits, below, chain = low + sum(high), low, []
    for i, width in enumerate(high):
        chain.append(random_net(width, seed + 1 + i, side_bits=below))
        below += width
    return EntropyPrior(bits, fit_prior([], bits).tables, random_net(low, seed), tuple(chain))


def round_trip(tokens: np.ndarray, prior: EntropyPrior) -> bytes:
    params = EntropyParams.for_encoding(prior, tokens.shape[1] * tokens.shape[2])
    assert params.model_id == 4
    data = encode_tokens(tokens, prior.bits, params, prior)
    assert np.array_equal(decode_tokens(data, tokens.shape, prior.bits, params, prior), tokens)
    return data


@pytest.mark.parametrize("widths", [(6, 6), (3, 2), (1, 8), (8, 1), (6, 6, 6, 6, 6), (2, 8, 1)])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 16), (3, 17, 1), (4, 12, 20), (0, 4, 4)])
def test_round_trip(widths: tuple[int, ...], shape: tuple[int, int, int]) -> None:
    prior = split_prior(*widths)
    bits = sum(widths)
    rng = np.random.default_rng(bits)
    top = (1 << bits) - 1
    for tokens in (np.zeros(shape, np.int64), np.full(shape, top, np.int64), rng.integers(0, top, shape, endpoint=True),
                   structured_tokens(bits, *shape, bits) if min(shape) else np.zeros(shape, np.int64)):
        round_trip(tokens, prior)


def linked_tokens(seed: int, T: int, H: int, W: int) -> np.ndarray:
    """8-bit tokens whose high 4 bits are a fixed function of the low 4 bits
    (palette regions that move), as in a tokenizer whose channels are not
    independent: the high bits are free given the low ones, not on their own."""
    low = palette_tokens(seed, T, H, W, 4)
    return low | (np.random.default_rng(7).permutation(16)[low] << 4)


def test_the_high_net_learns_from_the_low_bits_and_the_coder_spends_what_it_predicts() -> None:
    train = [linked_tokens(s, 5, 12, 16) for s in range(20)]
    config = ContextNetConfig(hidden=(32, 32), steps=300, batch=512, lr=5e-3)
    low, _ = fit_context_net(train, 4, config)
    high, report = fit_context_net(train, 4, config, side_bits=4)
    alone, report_alone = fit_context_net([t >> 4 for t in train], 4, config)
    assert high.side_bits == 4 and report.tokens == 20 * 5 * 12 * 16
    assert report.int_bits < 0.5 * report_alone.int_bits  # measured: 0.007 against 0.85 bits/token
    prior = EntropyPrior(8, fit_prior(train, 8).tables, low, (high,))
    test = linked_tokens(99, 5, 12, 16)
    data = round_trip(test, prior)
    counting = len(encode_tokens(test, 8, EntropyParams(prior=prior.id), prior))
    assert data[:4] == b"\0\0\0\0" and len(data) < 0.6 * counting  # coded by the nets
    ideal = (int_bits(low, *chunk_examples(test, 4)) + int_bits(high, *chunk_examples(test, 4, side_bits=4))) * test.size
    assert ideal <= 8 * (len(data) - 4) <= 1.02 * ideal + 64


def test_the_prior_keeps_both_nets_in_its_file_and_its_id(tmp_path: Path) -> None:
    prior = split_prior(6, 6)
    prior.save(tmp_path / "p.npz")
    again = EntropyPrior.load(tmp_path / "p.npz")
    assert again.id == prior.id and again.nets[0].bits == 6 and again.high_nets[0].side_bits == 6
    tokens = structured_tokens(4, 3, 8, 10, 12)
    params = EntropyParams.for_encoding(prior, 80)
    assert encode_tokens(tokens, 12, params, again) == encode_tokens(tokens, 12, params, prior)
    other = EntropyPrior(12, prior.tables, prior.net, (random_net(6, 9, side_bits=6),))
    assert len({prior.id, other.id, EntropyPrior(12, prior.tables).id}) == 3
    np.savez(tmp_path / "bad.npz", bits=np.int32(12), **prior.tables,
             **{"net/" + k: v for k, v in prior.net.arrays().items()},
             **{"high/" + k: v for k, v in prior.high_nets[0].arrays().items() if k != "side_bits"})
    with pytest.raises(ValueError, match="bad.npz"):
        EntropyPrior.load(tmp_path / "bad.npz")


def test_a_chain_of_nets_keeps_its_order_in_its_file_and_its_id(tmp_path: Path) -> None:
    """A 24-bit prior's four nets (the last seeing 18 bits below it) load back
    in order, and every net and its place in the chain count in the id."""
    prior = split_prior(6, 6, 6, 6)
    assert [(n.bits, n.side_bits) for n in prior.nets] == [(6, 0), (6, 6), (6, 12), (6, 18)]
    prior.save(tmp_path / "p.npz")
    again = EntropyPrior.load(tmp_path / "p.npz")
    assert again.id == prior.id and [n.digest for n in again.nets] == [n.digest for n in prior.nets]
    tokens = structured_tokens(6, 3, 8, 10, 24)
    params = EntropyParams.for_encoding(prior, 80)
    assert encode_tokens(tokens, 24, params, again) == round_trip(tokens, prior)
    shorter = split_prior(6, 6, 6)  # the same first three nets: the 18-bit level's chain
    assert [n.digest for n in shorter.nets] == [n.digest for n in prior.nets[:3]] and shorter.id != prior.id
    swapped = EntropyPrior(24, prior.tables, prior.net, (prior.high_nets[0], random_net(6, 3, side_bits=12),
                                                         random_net(6, 2, side_bits=18)))
    assert swapped.id != prior.id  # the same nets (but the order) code other bits


def test_inconsistent_nets_and_models_are_refused() -> None:
    tables = fit_prior([], 12).tables
    with pytest.raises(ValueError, match="bits above"):
        EntropyPrior(12, tables, random_net(6), (random_net(6, side_bits=5),))  # sees 5 low bits, not 6
    with pytest.raises(ValueError, match="code 11 bits"):
        EntropyPrior(12, tables, random_net(5), (random_net(6, side_bits=5),))  # 11 bits, not 12
    with pytest.raises(ValueError, match="bits above"):
        EntropyPrior(12, tables, None, (random_net(6, side_bits=6),))
    with pytest.raises(ValueError, match="bits above"):  # the third net must see 12 bits, not 6
        EntropyPrior(18, fit_prior([], 18).tables, random_net(6), (random_net(6, side_bits=6),) * 2)
    with pytest.raises(ValueError, match="no side tokens"):
        EntropyPrior(12, tables, random_net(6, side_bits=6))
    with pytest.raises(ValueError, match="side_bits"):
        random_net(6, side_bits=25)
    split = split_prior(6, 6)
    tokens = structured_tokens(5, 2, 8, 8, 12)
    with pytest.raises(ValueError, match="whole tokens"):
        encode_tokens(tokens, 12, EntropyParams(model_id=3, prior=split.id), split)
    whole = EntropyPrior(6, fit_prior([], 6).tables, random_net(6))
    with pytest.raises(ValueError, match="no chain of nets"):
        encode_tokens(tokens & 63, 6, EntropyParams(model_id=4, prior=whole.id), whole)
    data = round_trip(tokens, split)
    with pytest.raises(EntropyError, match="needs a prior"):
        decode_tokens(data, tokens.shape, 12, EntropyParams(model_id=4))
    with pytest.raises(EntropyError, match="neither 0"):
        decode_tokens(b"\x02\0\0\0" + data[4:], tokens.shape, 12, EntropyParams(model_id=4, prior=split.id), split)
    rng = np.random.default_rng(0)
    flipped = [bytes(b ^ (1 << int(rng.integers(8))) if i == j else b for i, b in enumerate(data))
               for j in rng.integers(4, len(data), 20)]
    for cut in [data[:4], data[:8], data + b"\0\0\0\0"] + flipped:  # an error or tokens of the shape, never a crash
        try:
            out = decode_tokens(cut, tokens.shape, 12, EntropyParams(model_id=4, prior=split.id), split)
        except EntropyError:
            continue
        assert out.shape == tokens.shape


_DET_SNIPPET = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_split_net import split_prior
from test_entropy import structured_tokens
from tokcodec.bitstream.entropy import EntropyParams, _net_encode
prior = split_prior(6, 6)
print(hashlib.sha256(_net_encode(structured_tokens(7, 5, 20, 24, 12), prior)).hexdigest())
"""

# Model 4's output is part of the file format.
GOLDEN_SHA256 = "de9c95a847d933ea40eddb0487fc514eb2ea2c3fa935007955dc3519faabc6b0"


def test_encoding_is_deterministic_across_threads() -> None:
    assert outputs_with_1_and_2_threads(_DET_SNIPPET) == [GOLDEN_SHA256] * 2


def test_container_round_trip_with_two_nets(tmp_path: Path) -> None:
    prior = split_prior(6, 6)
    h = Header(model="tiny", fingerprint="0123456789abcdef", width=64, height=48, padded_width=64,
               padded_height=48, fps=Fraction(25), frames=0, chunk_frames=9, temporal_factor=4,
               spatial_factor=8, bits=12, entropy=EntropyParams(model_id=4, prior=prior.id))
    grids = [structured_tokens(s, 3, 6, 8, 12) for s in range(2)]
    with TokWriter(tmp_path / "a.tok", h, prior=prior) as w:
        for g in grids:
            w.write_chunk(9, g)
    assert (tmp_path / "a.tok").read_bytes()[4:6] == bytes(VERSION) == b"\x01\x0a"
    with TokReader(tmp_path / "a.tok", prior_for=lambda header: prior) as r:
        assert r.header.entropy.model_id == 4
        assert all(np.array_equal(r.read_chunk(i).tokens, g) for i, g in enumerate(grids))


def test_the_rate_of_two_nets_is_the_sum_of_their_bits() -> None:
    """Refinement prices model 4's tokens by both nets: the low net's bits of
    the low planes plus the high net's of the planes above, given the low ones."""
    prior = split_prior(3, 2, seed=4)
    tokens = structured_tokens(6, 4, 7, 9, 5)
    signs = signs_of(tokens, 5)
    low, high = (NetRate(n) for n in prior.nets)
    assert torch.equal(high.inputs(signs[3:], None, 0, signs[:3]),
                       torch.from_numpy(chunk_inputs(tokens >> 3, 2, tokens, 3)))
    for net, rate in zip(prior.nets, (low, high)):
        x, y = chunk_examples(tokens, net.bits, net.side_bits)
        assert float(rate.chunk_bits(signs)) == pytest.approx(int_bits(net, x, y) * tokens.size, rel=1e-5)
    parts = sum(high.chunk_bits(signs[:, a:b], signs[:, :a] if a else None, a) for a, b in ((0, 1), (1, 4)))
    assert float(parts) == pytest.approx(float(high.chunk_bits(signs)), rel=1e-5)
