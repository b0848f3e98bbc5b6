"""Entropy priors: fitting, storage, coding with them, and files that need them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tokcodec.bitstream.container import Header, TokError, TokReader, TokWriter
from tokcodec.bitstream.entropy import (
    EntropyError,
    EntropyParams,
    EntropyPrior,
    decode_tokens,
    encode_tokens,
    fit_prior,
)

K = 10


def skewed_tokens(seed: int, T: int = 3, H: int = 6, W: int = 8, keep: float = 0.7) -> np.ndarray:
    """Tokens whose bit i is 1 with a fixed, plane-specific probability (what
    a prior can know and a short chunk must learn); each bit keeps its value
    from the previous latent frame with probability `keep`."""
    rng = np.random.default_rng(seed)
    p1 = np.linspace(0.05, 0.95, K)[:, None, None]
    b = np.empty((T, K, H, W), np.int64)
    b[0] = rng.random((K, H, W)) < p1
    for t in range(1, T):
        b[t] = np.where(rng.random((K, H, W)) < keep, b[t - 1], rng.random((K, H, W)) < p1)
    return (b << np.arange(K)[None, :, None, None]).sum(axis=1)


@pytest.fixture(scope="module")
def prior() -> EntropyPrior:
    return fit_prior([skewed_tokens(s, T=5, H=12, W=16) for s in range(100, 120)], K)


@pytest.mark.parametrize("warmup", [1024, 0])  # 0: what `tokcodec encode` uses on small frames
def test_prior_saves_bits_on_short_chunks_and_round_trips(prior: EntropyPrior, warmup: int) -> None:
    with_prior = EntropyParams(prior=prior.id, warmup=warmup)
    assert EntropyParams.for_encoding(prior, 22 * 18) == EntropyParams(prior=prior.id, warmup=0)
    assert EntropyParams.for_encoding(prior, 40 * 30) == EntropyParams(prior=prior.id)
    assert EntropyParams.for_encoding(None, 22 * 18) == EntropyParams()
    plain = without = 0
    for seed in range(5):
        tokens = skewed_tokens(seed)
        data = encode_tokens(tokens, K, with_prior, prior)
        assert np.array_equal(decode_tokens(data, tokens.shape, K, with_prior, prior), tokens)
        plain += len(encode_tokens(tokens, K))
        without += len(data)
    assert without < 0.9 * plain, (without, plain)


def test_prior_file_round_trip_keeps_id(prior: EntropyPrior, tmp_path: Path) -> None:
    prior.save(tmp_path / "p.npz")
    back = EntropyPrior.load(tmp_path / "p.npz")
    assert back.id == prior.id and back.bits == K and set(back.tables) == set(prior.tables)
    assert 0 < prior.id < 2**32
    assert prior.max_total() <= 128
    other = fit_prior([skewed_tokens(7, T=5, H=12, W=16)], K)
    assert other.id != prior.id


def test_missing_or_wrong_prior_is_refused(prior: EntropyPrior) -> None:
    tokens = skewed_tokens(0)
    params = EntropyParams(prior=prior.id)
    data = encode_tokens(tokens, K, params, prior)
    other = fit_prior([skewed_tokens(9, T=5, H=12, W=16)], K)
    with pytest.raises(EntropyError, match="was not given"):
        decode_tokens(data, tokens.shape, K, params)
    with pytest.raises(EntropyError, match="the data needs"):
        decode_tokens(data, tokens.shape, K, params, other)
    with pytest.raises(EntropyError, match="-bit tokens"):
        decode_tokens(data, tokens.shape, K + 1, params, prior)
    with pytest.raises(ValueError, match="name none"):
        encode_tokens(tokens, K, EntropyParams(), prior)
    with pytest.raises(ValueError, match="takes no prior"):
        encode_tokens(tokens, K, EntropyParams(model_id=0, prior=prior.id), prior)


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"intra/base": np.ones((2, 3), np.int32)}, "shape"),
        ({"inter/7/d": np.ones((2, K * 150), np.int32)}, "no context table"),
        ({"sideways": np.ones((2, K * 9), np.int32)}, "no context table"),
        ({"intra/base": np.zeros((2, K * 9), np.int32)}, "outside"),
        ({"intra/base": np.full((2, K * 9), 1 << 16, np.int32)}, "outside"),
        ({"intra/base": np.ones((2, K * 9), np.float32)}, "integers"),
    ],
)
def test_malformed_priors_are_refused(tables, message, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        EntropyPrior(K, tables)
    np.savez(tmp_path / "bad.npz", bits=np.int32(K), **tables)
    with pytest.raises(ValueError, match=message):
        EntropyPrior.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not an entropy prior"):
        EntropyPrior.load(tmp_path / "junk.npz")


def test_container_needs_the_prior_its_header_names(prior: EntropyPrior, tmp_path: Path) -> None:
    h = Header(model="tiny", fingerprint="0123456789abcdef", width=64, height=48, padded_width=64,
               padded_height=48, fps=Fraction(25), frames=0, chunk_frames=9, temporal_factor=4,
               spatial_factor=8, bits=K, entropy=EntropyParams(prior=prior.id))
    with pytest.raises(ValueError, match="prior"):
        TokWriter(tmp_path / "x.tok", h)
    grid = skewed_tokens(3, T=3, H=6, W=8)
    with TokWriter(tmp_path / "a.tok", h, prior=prior) as w:
        w.write_chunk(9, grid)
    with TokReader(tmp_path / "a.tok", prior_for=lambda header: prior) as r:
        assert r.header.entropy.prior == prior.id
        assert np.array_equal(r.read_chunk(0).tokens, grid)
    with TokReader(tmp_path / "a.tok") as r:
        assert r.read_chunk(0, tokens=False).payload_bytes > 0  # metadata needs no prior
        with pytest.raises(TokError, match="entropy prior .* which this tokcodec does not have"):
            r.read_chunk(0)


def test_headers_without_a_prior_field_still_parse() -> None:
    """A v1.0 header stored four entropy parameters; the prior field was added after."""
    import io
    import struct

    from tokcodec.bitstream import container

    h = Header(model="tiny", fingerprint="0123456789abcdef", width=64, height=48, padded_width=64,
               padded_height=48, fps=Fraction(25), frames=0, chunk_frames=9, temporal_factor=4,
               spatial_factor=8, bits=K)
    old = container._entropy_params_bytes(h.entropy)[:-4]
    params = container._entropy_params_from(1, old)
    assert params == EntropyParams(model_id=1)
    assert Header.read(io.BytesIO(h.to_bytes())) == h
    assert struct.calcsize("<5I") == len(container._entropy_params_bytes(h.entropy))


def test_refitted_priors_retire_the_old_ones_which_still_decode(prior: EntropyPrior, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tokcodec import priors

    monkeypatch.setattr(priors, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(priors, "RETIRED_DIR", tmp_path / "retired")
    priors.load_prior.cache_clear()
    priors._load_retired.cache_clear()
    newer = fit_prior([skewed_tokens(seed, T=3, H=6, W=8) ^ 1 for seed in range(4)], K)
    assert newer.id != prior.id
    path = priors.prior_path("tiny", K)
    prior.save(path)
    priors._retire(path, "tiny", K, newer.id)
    newer.save(path)
    assert priors.retired_prior_path("tiny", K, prior.id).is_file()

    def header(prior_id: int) -> Header:
        return Header(model="tiny", fingerprint="0123456789abcdef", width=64, height=48, padded_width=64,
                      padded_height=48, fps=Fraction(25), frames=0, chunk_frames=9, temporal_factor=4,
                      spatial_factor=8, bits=K, entropy=EntropyParams(prior=prior_id))

    try:
        assert priors.prior_for(header(newer.id)).id == newer.id  # the current one
        assert priors.prior_for(header(prior.id)).id == prior.id  # the retired one: old files still decode
        assert priors.prior_for(header(12345)) is None
    finally:
        priors.load_prior.cache_clear()
        priors._load_retired.cache_clear()
