"""Keeping a source's super-whites: the Y' span, its conversions, and encode/decode with it."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_av_source, make_superwhite_source

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import metrics  # noqa: E402  (bench's BT.601 Y' of RGB, as rd.py measures it)

import tokcodec
from tokcodec.cli import main
from tokcodec.codec.io import VideoWriter, iter_frames, source_luma
from tokcodec.codec.luma_range import (NOMINAL, LumaRange, choose_luma_range, rgb_to_yuv, to_display,
                                        yuv_to_rgb)
from tokcodec.files import header_span, open_tok, source_span


def y_planes(path: Path) -> np.ndarray:
    """The Y' codes a video file holds: its luma plane, or BT.601 limited-range
    Y' of its RGB (what a player's RGB stands for)."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    if not frames[0].format.name.startswith("yuv"):  # lossless RGB decodes as gbrp
        return metrics.rgb_to_y(np.stack([f.to_ndarray(format="rgb24") for f in frames]))
    return np.stack([f.reformat(format="yuv444p").to_ndarray()[0] for f in frames])


def test_span_widens_only_the_end_whose_clipping_costs_enough() -> None:
    y = np.full((4, 40, 50), 120, np.uint8)
    assert choose_luma_range(y, "bt601") == NOMINAL
    sky = y.copy()
    sky[:, :10] = 250  # a fifth of the samples 15 codes above white: 10*log10(255^2 / 45) = 31.6 dB
    assert choose_luma_range(sky, "bt709") == LumaRange(16, 255, "bt709")
    speck = y.copy()
    speck[:, 0, :5] = 250  # 0.25% of the samples: 47.6 dB, not worth the contrast
    assert choose_luma_range(speck, "bt601") == NOMINAL
    night = y.copy()
    night[:, :20] = 2
    assert choose_luma_range(night, "bt601") == LumaRange(0, 235, "bt601")


def test_span_validation_and_header_codes() -> None:
    with pytest.raises(ValueError, match="black < white"):
        LumaRange(200, 100)
    with pytest.raises(ValueError, match="matrix"):
        LumaRange(matrix="bt2020")
    span = LumaRange.from_codes(0, 255, 1)
    assert span == LumaRange(0, 255, "bt709") and span.matrix_code == 1 and not span.nominal
    assert NOMINAL.nominal


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_codes_survive_the_round_trip_through_rgb(matrix: str) -> None:
    rng = np.random.default_rng(0)
    span = LumaRange(16, 255, matrix)
    y = rng.integers(40, 231, (1, 30, 40))
    c = rng.integers(120, 137, (2, 30, 40))  # chroma near grey stays inside the RGB gamut
    y[:, :, 0], c[:, :, 0] = 255, 128  # super-white grey
    planes = np.concatenate([y, c]).astype(np.uint8)
    back = rgb_to_yuv(yuv_to_rgb(planes, span), span).astype(int)
    assert np.abs(back - planes).max() <= 2  # 8-bit RGB in between
    assert back[0].max() >= 254  # super-whites are not clipped


def test_display_rgb_is_what_the_usual_conversion_shows() -> None:
    rng = np.random.default_rng(1)
    planes = np.concatenate([rng.integers(16, 256, (1, 20, 20)), rng.integers(120, 137, (2, 20, 20))]).astype(np.uint8)
    span = LumaRange(16, 255, "bt601")
    codec_rgb = yuv_to_rgb(planes, span)
    shown = to_display(codec_rgb, span).astype(int)
    usual = yuv_to_rgb(planes, NOMINAL).astype(int)  # clips Y' above 235, as players do
    assert np.abs(shown - usual).max() <= 2
    assert to_display(codec_rgb, NOMINAL) is codec_rgb


def test_writer_puts_the_codes_back(tmp_path: Path) -> None:
    src = tmp_path / "sky.mp4"
    ys = np.stack(make_superwhite_source(src, n=3))
    y, matrix = source_luma(src)
    span = choose_luma_range(y, matrix)
    assert span == LumaRange(16, 255, "bt601")
    frames = list(iter_frames(src, span))
    assert max(f.max() for f in frames) == 255
    out = tmp_path / "out.mp4"
    with VideoWriter(out, 25, 64, 48, lossless=True, luma=span) as w:
        for f in frames:
            w.write(f)
    assert np.abs(y_planes(out).astype(int) - ys).max() <= 1
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.pix_fmt, int(cc.color_range), int(cc.colorspace)) == ("yuv444p", 1, 6)
    usual = tmp_path / "usual.mp4"
    with VideoWriter(usual, 25, 64, 48, lossless=True) as w:
        for f in iter_frames(src):
            w.write(f)
    assert y_planes(usual).max() <= 235  # the usual path: the RGB players show, super-whites clipped
    assert source_luma(usual) is None  # an RGB file has no headroom to keep


def test_the_span_looks_beyond_the_first_frames_but_not_beyond_what_is_encoded(tmp_path: Path) -> None:
    src = tmp_path / "late.mp4"
    make_superwhite_source(src, n=80, nominal_first=40)  # the sky shows up after 1.6 s
    first, _ = source_luma(src, spread=0)
    assert first.max() <= 200
    assert source_span(src) == LumaRange(16, 255)  # found in frames spread over the file
    assert source_span(src, until=1.2) == NOMINAL  # `encode --frames 30` never reaches it
    assert source_span(src, "clip") == NOMINAL and source_span(src, "keep") == LumaRange(0, 255)


def test_sources_without_headroom_keep_the_usual_conversion(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_av_source(src, n=3)
    assert choose_luma_range(*source_luma(src)) == NOMINAL


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("sky") / "sky.mp4"
    return path, np.stack(make_superwhite_source(path, n=9))


def test_encode_keeps_super_whites_and_decode_writes_them_back(sky: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, ys = sky
    runs = {}
    for headroom in ("auto", "clip"):
        tok = tmp_path / f"{headroom}.tok"
        r = tokcodec.encode_file(src, tok, headroom=headroom, refine=None)
        out = tmp_path / f"{headroom}.mp4"
        tokcodec.decode_file(tok, out, lossless=True)
        with open_tok(tok) as reader:
            runs[headroom] = (r, header_span(reader.header), y_planes(out))
    (r, span, y), (_, clipped_span, y_clip) = runs["auto"], runs["clip"]
    assert r.luma_range == span == LumaRange(16, 255, "bt601")
    assert clipped_span == NOMINAL
    top = ys > 235
    assert y[top].mean() > 236 > 235 >= y_clip.max()  # the sky comes back above white only when kept
    mse = lambda a: float(np.mean((a.astype(float) - ys) ** 2))  # noqa: E731
    assert mse(y) < mse(y_clip)  # closer to the source's codes


def test_cli_says_what_it_kept(sky: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, _ = sky
    tok = tmp_path / "s.tok"
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tok), "--refine", "0"])
    assert r.exit_code == 0, r.output
    assert "kept the source's headroom: Y' 16..255 coded" in r.output
    r = CliRunner().invoke(main, ["info", str(tok)])
    assert "Y' 16..255 coded (bt601)" in r.output
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "k.tok"), "--headroom", "nope"])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_the_span_survives_export_and_pack(sky: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, _ = sky
    tok = tmp_path / "s.tok"
    tokcodec.encode_file(src, tok, refine=None, quality=2)
    tokcodec.export_tokens(tok, tmp_path / "s.npz")
    report = tokcodec.pack_tokens(tmp_path / "s.npz", tmp_path / "p.tok")
    with open_tok(tok) as a, open_tok(tmp_path / "p.tok") as b:
        assert header_span(a.header) == header_span(b.header) == report.luma_range == LumaRange(16, 255)
