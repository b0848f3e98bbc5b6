"""The coarse luma layer: its coding, its pixels, and the encoder's choice of it."""

from __future__ import annotations

import numpy as np
import pytest

from tokcodec.bitstream.luma_layer import MAX_VALUE, LumaLayer, decode_layer, encode_layer, layer_shape
from tokcodec.codec.luma_layer import apply, cell_means, correction, luma, measure
from tokcodec.streaming.rate_control import choose_layer


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
    data = encode_layer(LumaLayer(16, 4, 4, values))
    assert len(data) < values.size  # fewer than a byte a cell
    back = decode_layer(data, 33, 240, 320)
    assert (back.block, back.group, back.step) == (16, 4, 4) and np.array_equal(back.values, values)
    assert encode_layer(None) == b"" and decode_layer(b"", 33, 240, 320) is None
    flat = encode_layer(LumaLayer(8, 1, 2, np.zeros((1, 1, 1), np.int8)))
    assert decode_layer(flat, 1, 5, 7).values.shape == (1, 1, 1)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:3], "bad size"),
    (lambda d: bytes([2]) + d[1:], "bad cell"),
    (lambda d: d[:5], "without values"),
])
def test_malformed_layers_are_refused_in_one_line(damage, message: str) -> None:
    data = encode_layer(LumaLayer(16, 4, 4, np.ones((3, 2, 2), np.int8)))
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
    data = encode_layer(LumaLayer(4, 1, 1, np.zeros((1, 1, 1), np.int8)))
    with pytest.raises(ValueError, match="cells"):
        decode_layer(data, 65, 16384, 16384)


def test_cell_means_average_partial_cells_over_what_they_hold() -> None:
    y = np.arange(5 * 7 * 9, dtype=np.float32).reshape(5, 7, 9)
    means = cell_means(y, 4, 2)
    assert means.shape == layer_shape(5, 7, 9, 4, 2) == (3, 2, 3)
    assert means[2, 1, 2] == pytest.approx(y[4:, 4:, 8:].mean())
    assert means[0, 0, 0] == pytest.approx(y[:2, :4, :4].mean())


def test_a_uniform_luma_offset_is_measured_and_removed() -> None:
    source = smooth_frames()
    decoded = np.clip(source.astype(np.int16) - 12, 0, 255).astype(np.uint8)
    layer = measure(luma(source), luma(decoded), 16, 4, 4)
    assert np.all(layer.values == 3)  # 12 levels of luma in steps of 4
    out = apply(decoded, layer)
    assert np.abs(luma(out) - luma(source)).mean() < 0.6  # back to the source but for rounding
    # R, G and B move alike: the chroma of every pixel stays
    assert np.array_equal(out.astype(int) - decoded.astype(int), np.repeat((out[..., :1].astype(int)
                                                                            - decoded[..., :1]), 3, axis=-1))
    # a frame range of the chunk gets the same correction as the whole chunk
    up = correction(layer, *source.shape[1:3])
    assert np.array_equal(apply(decoded[5:7], layer, 5, up), out[5:7])


def test_the_encoder_keeps_a_layer_only_where_it_pays() -> None:
    source = smooth_frames(seed=1)
    size = lambda layer: len(encode_layer(layer))  # noqa: E731
    assert choose_layer(source, source, 2000, size) is None  # nothing to correct
    dark = np.clip(source.astype(np.int16) - 10, 0, 255).astype(np.uint8)
    layer = choose_layer(dark, source, 2000, size)
    assert layer is not None
    assert luma(np.abs(apply(source, layer).astype(np.int16) - dark)).mean() < 1.5
    # where the error is mostly fine detail the layer cannot carry, its bytes would buy too little
    noise = np.random.default_rng(2).normal(0, 10, source.shape[:3])[..., None]
    noisy = np.clip(np.rint(source + noise - 2), 0, 255).astype(np.uint8)
    assert choose_layer(noisy, source, 20, size) is None
