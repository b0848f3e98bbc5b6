"""The coarse layers (Y', Cb, Cr): their coding, their pixels, and the encoder's choice of them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokcodec.bitstream.luma_layer import (MAX_VALUE, CellLayer, Layers, decode_layer, decode_layers, encode_layer,
                                           encode_layers, layer_shape, layers_size)
from tokcodec.codec.luma_layer import apply, correction, corrections, group_means, luma, measure, planes, upsampling
from tokcodec.streaming.rate_control import choose_layers


def smooth_frames(n: int = 9, h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    """uint8 RGB frames with texture and a slow gradient, away from 0 and 255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    base = 80 + 40 * np.sin(x / 9.0)[None] + 30 * np.cos(y / 7.0)[None] + np.arange(n)[:, None, None]
    rgb = base[..., None] + np.array([10, 0, -10]) + rng.normal(0, 6, (n, h, w, 3))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def test_layers_round_trip_and_the_shape_comes_from_the_chunk() -> None:
    rng = np.random.default_rng(0)
    shape = layer_shape(33, 240, 320, 16, 4)
    assert shape == (9, 15, 20)
    values = np.clip(np.rint(rng.laplace(0, 3, shape)), -MAX_VALUE, MAX_VALUE).astype(np.int8)
    values[0, 0, 0], values[1, 0, 0] = MAX_VALUE, -MAX_VALUE  # the widest step between groups
    data = encode_layer(CellLayer(16, 4, 4, values))
    assert len(data) < values.size  # fewer than a byte a cell
    back = decode_layer(data, 33, 240, 320)
    assert (back.block, back.group, back.step) == (16, 4, 4) and np.array_equal(back.values, values)
    assert encode_layer(None) == b"" and decode_layer(b"", 33, 240, 320) is None
    flat = encode_layer(CellLayer(8, 1, 2, np.zeros((1, 1, 1), np.int8)))
    assert decode_layer(flat, 1, 5, 7).values.shape == (1, 1, 1)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:3], "bad size"),
    (lambda d: bytes([2]) + d[1:], "bad cell"),
    (lambda d: d[:5], "without values"),
])
def test_malformed_layers_are_refused_in_one_line(damage, message: str) -> None:
    data = encode_layer(CellLayer(16, 4, 4, np.ones((3, 2, 2), np.int8)))
    with pytest.raises(ValueError, match=message):
        decode_layer(damage(data), 9, 30, 20)


def test_random_payloads_give_a_layer_or_a_one_line_error() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        data = bytes([16, 4, 4, int(rng.integers(1, 256)), int(rng.integers(1, 256))])
        data += rng.integers(0, 256, 4 * int(rng.integers(1, 6)), dtype=np.uint8).tobytes()
        try:
            layer = decode_layer(data, 9, 30, 20)
        except ValueError as exc:
            assert "\n" not in str(exc)
        else:
            assert layer.values.shape == (3, 2, 2) and np.abs(layer.values).max() <= MAX_VALUE


def test_a_reader_bounds_the_cells_before_allocating() -> None:
    data = encode_layer(CellLayer(4, 1, 1, np.zeros((1, 1, 1), np.int8)))
    with pytest.raises(ValueError, match="cells"):
        decode_layer(data, 65, 16384, 16384)


def test_group_means_average_the_last_group_over_what_it_holds() -> None:
    y = np.arange(5 * 7 * 9, dtype=np.float32).reshape(5, 7, 9)
    means = group_means(y, 2)
    assert means.shape == (3, 7, 9)
    assert np.allclose(means[0], y[:2].mean(0)) and np.allclose(means[2], y[4])


def test_the_fit_is_the_decoders_interpolation_inverted_in_least_squares() -> None:
    rng = np.random.default_rng(9)
    n, H, W, block, group = 6, 37, 50, 8, 3  # partial cells at the right and bottom
    # one axis of the decoder's bilinear is the interpolation matrix
    values = rng.integers(-5, 6, layer_shape(n, H, W, block, group)).astype(np.int8)
    up = correction(CellLayer(block, group, 2, values), H, W)
    rows, cols = upsampling(values.shape[1], block, H), upsampling(values.shape[2], block, W)
    assert np.allclose(up, 2 * rows @ values.astype(np.float64) @ cols.T, atol=1e-5)
    # an error the decoder can express exactly is found exactly, frames within a group averaged
    decoded = rng.uniform(60, 190, (n, H, W)).astype(np.float32)
    wobble = rng.normal(0, 3, (n, H, W)).astype(np.float32)
    wobble -= group_means(wobble, group).repeat(group, axis=0)[:n].astype(np.float32)  # zero mean per group
    source = decoded + up[np.arange(n) // group] + wobble
    assert np.array_equal(measure(source, decoded, block, group, 2).values, values)
    # cell means of a sharp error fit worse than the least-squares values
    sharp = decoded + np.where(np.arange(W) < 20, 9.0, -9.0).astype(np.float32)
    fit = measure(sharp, decoded, block, group, 1)
    residual = lambda v: np.square(sharp - decoded - correction(CellLayer(block, group, 1, v), H, W)[np.arange(n) // group]).mean()  # noqa: E731
    column = np.where(np.arange(W) < 20, 9.0, -9.0)
    means = np.rint([column[c * block : (c + 1) * block].mean() for c in range(fit.values.shape[2])])
    assert residual(fit.values) < residual(np.broadcast_to(means, fit.values.shape).astype(np.int8))


def test_a_uniform_luma_offset_is_measured_and_removed() -> None:
    source = smooth_frames()
    decoded = np.clip(source.astype(np.int16) - 12, 0, 255).astype(np.uint8)
    layer = measure(luma(source), luma(decoded), 16, 4, 4)
    assert np.all(layer.values == 3)  # 12 levels of luma in steps of 4
    out = apply(decoded, Layers(layer))
    assert np.abs(luma(out) - luma(source)).mean() < 0.6  # back to the source but for rounding
    # R, G and B move alike: the chroma of every pixel stays
    assert np.array_equal(out.astype(int) - decoded.astype(int), np.repeat((out[..., :1].astype(int)
                                                                            - decoded[..., :1]), 3, axis=-1))
    # a frame range of the chunk gets the same correction as the whole chunk
    up = corrections(Layers(layer), *source.shape[1:3])
    assert np.array_equal(apply(decoded[5:7], Layers(layer), 5, up), out[5:7])


@pytest.mark.parametrize("matrix", [0, 1])
def test_a_chroma_offset_is_measured_and_removed_without_moving_luma(matrix: int) -> None:
    source = smooth_frames(seed=4) // 2 + 64  # far from 0 and 255: no channel clips when the colour moves
    y, cb, cr = planes(source, matrix)
    # the same picture with Cb 8 lower and Cr 6 higher: R, G, B through the inverse matrix
    shifted = np.clip(np.rint(source + apply(np.zeros_like(source, np.uint8) + 128,
                                             Layers(None, CellLayer(64, 9, 2, np.full((1, 1, 1), -4, np.int8)),
                                                    CellLayer(64, 9, 2, np.full((1, 1, 1), 3, np.int8))),
                                             matrix=matrix).astype(np.float32) - 128), 0, 255).astype(np.uint8)
    y2, cb2, cr2 = planes(shifted, matrix)
    assert np.abs(y2 - y).mean() < 0.6 and abs(float((cb2 - cb).mean()) + 8) < 0.5 and abs(float((cr2 - cr).mean()) - 6) < 0.5
    layers = Layers(None, measure(cb, cb2, 16, 4, 2), measure(cr, cr2, 16, 4, 2))
    assert np.all(layers.cb.values == 4) and np.all(layers.cr.values == -3)
    back = apply(shifted, layers, matrix=matrix)
    y3, cb3, cr3 = planes(back, matrix)
    assert np.abs(cb3 - cb).mean() < 0.8 and np.abs(cr3 - cr).mean() < 0.8
    assert np.abs(y3 - y2).mean() < 0.6  # a chroma layer leaves Y' be, but for rounding


def test_chunk_layers_round_trip_by_plane() -> None:
    rng = np.random.default_rng(5)
    shape = layer_shape(9, 30, 20, 8, 4)
    layer = lambda: CellLayer(8, 4, 4, rng.integers(-3, 4, shape).astype(np.int8))  # noqa: E731
    for chunk in (Layers(layer(), layer(), layer()), Layers(None, layer()), Layers(cr=layer()), Layers(layer())):
        back = decode_layers(encode_layers(chunk, True), 9, 30, 20, True)
        assert [None if p is None else p.values.tolist() for p in back.planes] == \
            [None if p is None else p.values.tolist() for p in chunk.planes]
    assert encode_layers(Layers(), True) == b"" and not decode_layers(b"", 9, 30, 20, True)
    y = Layers(layer())
    assert encode_layers(y, False) == encode_layer(y.y)  # a 1.7 file's payload: the Y' layer alone
    assert np.array_equal(decode_layers(encode_layers(y, False), 9, 30, 20, False).y.values, y.y.values)
    with pytest.raises(ValueError, match="chroma"):
        encode_layers(Layers(cb=layer()), False)
    # an encoder can price a combination of planes from the planes' own sizes
    for chunk in (Layers(layer(), layer(), layer()), Layers(None, layer()), Layers(cr=layer()), Layers(layer()), Layers()):
        sizes = tuple(len(encode_layer(p)) for p in chunk.planes)
        assert layers_size(sizes, True) == len(encode_layers(chunk, True))
        if chunk.cb is None and chunk.cr is None:
            assert layers_size(sizes, False) == len(encode_layers(chunk, False))


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:6], "bad size"),
    (lambda d: d[:4] + (10 ** 6).to_bytes(4, "little") + d[8:], "bad size"),
    (lambda d: bytes(8), "without a layer"),
    (lambda d: d[:8] + bytes([2]) + d[9:], "bad cell"),
])
def test_malformed_chunk_layers_are_refused_in_one_line(damage, message: str) -> None:
    data = encode_layers(Layers(CellLayer(16, 4, 4, np.ones((3, 2, 2), np.int8))), True)
    with pytest.raises(ValueError, match=message):
        decode_layers(damage(data), 9, 30, 20, True)


def test_the_encoder_keeps_a_layer_only_where_it_pays() -> None:
    source = smooth_frames(seed=1)
    assert not choose_layers(source, source, 2000, chroma=True)  # nothing to correct
    dark = np.clip(source.astype(np.int16) - 10, 0, 255).astype(np.uint8)
    layers = choose_layers(dark, source, 2000)
    assert layers.y is not None and layers.cb is None and layers.cr is None
    assert luma(np.abs(apply(source, layers).astype(np.int16) - dark)).mean() < 1.5
    # where the error is mostly fine detail the layer cannot carry, its bytes would buy too little
    noise = np.random.default_rng(2).normal(0, 10, source.shape[:3])[..., None]
    noisy = np.clip(np.rint(source + noise - 2), 0, 255).astype(np.uint8)
    assert not choose_layers(noisy, source, 20)
    # a layer larger than the tokens would make a low point a higher one: refused, however well it scores
    size = len(encode_layer(layers.y))
    assert choose_layers(dark, source, size - 1, max_share=math.inf, allowance=0).y is not None
    capped = choose_layers(dark, source, size - 1, allowance=0).y
    assert capped is None or len(encode_layer(capped)) <= size - 1
    assert not choose_layers(dark, source, 8, allowance=0)  # the smallest layer (5 bytes of header, a word of values) is 9
    # a tiny chunk may still spend the allowance: its tokens weigh less than the file's header
    assert choose_layers(dark, source, 8, allowance=size).y is not None


def test_a_luma_layer_is_judged_on_the_rgb_frames_the_decoder_writes() -> None:
    # The same Y' error (-6) on grey and on saturated blue (R = G = 0). On grey a Y' layer removes
    # it. On blue it would lower R and G, which clip at 0, and B: Y' moves by Kb = 0.114 of the
    # step, about 1.4 dB, less than the layer's bytes cost at this rate (2.8 dB). On the Y' plane
    # alone it looked like 16 dB.
    grey = smooth_frames(seed=3)
    blue = np.zeros_like(grey)
    blue[..., 2] = np.clip(grey[..., 1].astype(np.int16) + 90, 0, 255)
    dark_blue = blue.copy()
    dark_blue[..., 2] = np.clip(blue[..., 2].astype(np.int16) - 53, 0, 255)
    dark_grey = np.clip(grey.astype(np.int16) - 6, 0, 255).astype(np.uint8)
    assert luma(dark_blue).mean() - luma(blue).mean() == pytest.approx(-6, abs=0.1)
    assert choose_layers(dark_grey, grey, 10, db_per_doubling=3).y is not None
    assert choose_layers(dark_blue, blue, 10, db_per_doubling=3).y is None


def test_the_encoder_sends_chroma_layers_where_colour_is_off() -> None:
    source = smooth_frames(seed=6) // 2 + 64
    shift = Layers(None, CellLayer(64, 9, 2, np.full((1, 1, 1), -4, np.int8)),
                   CellLayer(64, 9, 2, np.full((1, 1, 1), 4, np.int8)))
    redder = apply(source, shift)  # Cb 8 lower, Cr 8 higher, Y' as it was: two of the encoder's steps
    assert not choose_layers(redder, source, 2000)  # chroma off: none unless asked
    layers = choose_layers(redder, source, 2000, chroma=True)
    assert layers.cb is not None and layers.cr is not None
    _, cb, cr = planes(redder)
    _, cb0, cr0 = planes(source)
    _, cb1, cr1 = planes(apply(source, layers))
    assert np.abs(cb1 - cb).mean() < 0.3 * np.abs(cb0 - cb).mean()
    assert np.abs(cr1 - cr).mean() < 0.3 * np.abs(cr0 - cr).mean()
    assert not choose_layers(source, source, 2000, luma_layer=False, chroma=True)


def test_the_planes_are_chosen_together_and_share_the_sizes_header() -> None:
    # Y' a step dark and Cb well off: at the exchange rate where a Y' layer just pays in a
    # Y'-only file, it pays in a chroma file too, beside a Cb layer whose 8-byte header of
    # sizes it shares; chosen on its own first it would be charged the header and dropped.
    source = smooth_frames(seed=7) // 2 + 64
    off = Layers(CellLayer(64, 9, 1, np.full((1, 1, 1), -4, np.int8)), CellLayer(64, 9, 2, np.full((1, 1, 1), -4, np.int8)))
    noise = np.random.default_rng(8).normal(0, 3, source.shape[:3])[..., None]
    decoded = np.clip(np.rint(apply(source, off) + noise), 0, 255).astype(np.uint8)
    keeps = lambda rate: choose_layers(source, decoded, 2000, db_per_doubling=rate).y is not None  # noqa: E731
    low, high = 0.01, 1e5  # the exchange rate at which the Y'-only file drops its layer
    assert keeps(low) and not keeps(high)
    while high / low > 1.01:
        low, high = (((low * high) ** 0.5, high) if keeps((low * high) ** 0.5) else (low, (low * high) ** 0.5))
    layers = choose_layers(source, decoded, 2000, chroma=True, db_per_doubling=low)
    assert layers.y is not None and layers.cb is not None
