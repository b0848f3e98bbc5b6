"""The rate ladder: operating points of (coding scale, LFQ level) behind `encode --quality`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from media import make_av_source

import tokcodec
from tokcodec.cli import main
from tokcodec.codec import DEFAULT_MODEL, LFQConfig, Tokenizer, TokenizerConfig, available_models, load_tokenizer
from tokcodec.codec.clips import coded_size
from tokcodec.ladder import Ladder, OperatingPoint, ladder_path, model_ladder


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "in.mp4"
    make_av_source(path, n=9, fps=25)  # 64x48
    return path


BITS = (6, 12, 18, 24, 30)


def test_point_lookup_and_refusal() -> None:
    ladder = Ladder((OperatingPoint(0, 0.5), OperatingPoint(0, 1.0), OperatingPoint(1, 2.0)), 1, BITS)
    assert ladder.point(None) == OperatingPoint(0, 1.0)
    assert ladder.point(2) == OperatingPoint(1, 2.0)
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=f"quality {bad} is not available"):
            ladder.point(bad)
    with pytest.raises(ValueError, match="default quality 3"):
        Ladder(ladder.points, 3, BITS)
    with pytest.raises(ValueError, match="levels \\[5\\] are not levels"):
        Ladder((OperatingPoint(5),), 0, BITS)
    with pytest.raises(ValueError, match="scale"):
        OperatingPoint(0, 5.0)


def test_upscaling_is_capped_by_the_coded_pixels_and_goes_on_in_bits() -> None:
    """Above the pixel cap a point takes the largest quarter-step scale that fits (never below 1)
    and as many more bits per token as keep its raw bits per source pixel."""
    points = (OperatingPoint(0, 0.5), OperatingPoint(0, 2.0), OperatingPoint(0, 3.0), OperatingPoint(1, 3.0))
    ladder = Ladder(points, 1, BITS, max_upscaled_pixels=1920 * 1080)
    assert ladder.for_frame(1, 176, 144) == OperatingPoint(0, 2.0)  # small frames: the point as it is
    assert ladder.for_frame(1, 800, 600) == OperatingPoint(0, 2.0)  # 2.08x would fit: the quarter step below
    assert ladder.for_frame(2, 800, 600) == OperatingPoint(1, 2.0)  # 3x -> 2x: 6 x 2.25 = 13.5 bits -> 12
    assert ladder.for_frame(3, 800, 600) == OperatingPoint(3, 2.0)  # 12 x 2.25 = 27 -> 24
    assert ladder.for_frame(1, 1280, 720) == OperatingPoint(0, 1.5)  # 6 x (2/1.5)^2 = 10.7 bits: still 6
    assert ladder.for_frame(1, 1920, 1080) == OperatingPoint(3, 1.0)  # 6 x 4 = 24 bits at 1x
    assert ladder.for_frame(3, 3840, 2160) == OperatingPoint(4, 1.0)  # 108 bits wanted: the top level
    assert ladder.for_frame(0, 3840, 2160) == OperatingPoint(0, 0.5)  # downscaling points are not capped
    assert ladder.for_frame(1, 176, 144, max_scale=1.0) == OperatingPoint(3, 1.0)  # live ingest: no upscaling
    assert ladder.for_frame(0, 176, 144, max_scale=1.0) == OperatingPoint(0, 0.5)
    for w, h in ((1000, 700), (800, 600), (1280, 720), (1366, 768)):
        cw, ch = coded_size(w, h, ladder.for_frame(2, w, h).scale)
        assert cw * ch <= 1920 * 1080


def test_a_model_without_a_ladder_file_has_its_levels_at_scale_1() -> None:
    config = TokenizerConfig(name="no-ladder-model", lfq=LFQConfig(bits=10, levels=(4, 10), default_level=0))
    ladder = model_ladder(config)
    assert ladder.points == (OperatingPoint(0, 1.0), OperatingPoint(1, 1.0)) and ladder.default == 0


def test_the_shipped_ladder_ascends_in_rate_and_names_real_levels() -> None:
    """Lowest rate first: no point codes fewer pixels or fewer bits per token than the one before it."""
    info = {m.name: m for m in available_models()}[DEFAULT_MODEL]
    assert ladder_path(DEFAULT_MODEL).is_file()
    ladder = model_ladder(info.config)
    assert len(ladder.points) >= 3
    for lo, hi in zip(ladder.points, ladder.points[1:]):
        assert (hi.scale, hi.level) != (lo.scale, lo.level) and hi.scale >= lo.scale and hi.level >= lo.level
    assert all(0 <= p.level < len(info.config.lfq.level_bits) for p in ladder.points)
    assert DEFAULT_MODEL in [m.name for m in available_models()]
    assert not any("." in m.name for m in available_models())  # NAME.ladder.json is not a model


def test_models_json_lists_the_ladder() -> None:
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(main, ["models", "--json"]).output)}
    row = rows[DEFAULT_MODEL]
    ladder = model_ladder({m.name: m for m in available_models()}[DEFAULT_MODEL].config)
    assert [(q["scale"], q["level"]) for q in row["quality_levels"]] == [(p.scale, p.level) for p in ladder.points]
    assert row["default_quality"] == ladder.default


def test_encode_codes_at_the_points_scale_and_level_and_overrides_win(source: Path, tmp_path: Path) -> None:
    """The default point's scale reaches the header; --scale and --level replace the point's parts."""
    ladder = model_ladder({m.name: m for m in available_models()}[DEFAULT_MODEL].config)
    model = load_tokenizer(DEFAULT_MODEL)
    point = ladder.point(None)
    out = tmp_path / "default.tok"
    tokcodec.encode_file(source, out, model=model, chunk_frames=9)
    info = tokcodec.tok_info(out)
    assert info["quality"] == ladder.default
    assert tuple(info["coded_size"]) == coded_size(64, 48, ladder.for_frame(None, 64, 48).scale)
    assert info["bits"] == model.config.lfq.level_bits[point.level]
    r = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "o.tok"), "--chunk-frames", "9",
                                  "--scale", "1", "--level", "0"])
    assert r.exit_code == 0, r.output
    assert f"quality {ladder.default} ({model.config.lfq.level_bits[0]}-bit tokens, coded at 64x48)" in r.output
    info = tokcodec.tok_info(tmp_path / "o.tok")
    assert tuple(info["coded_size"]) == (64, 48) and info["bits"] == model.config.lfq.level_bits[0]
    r = CliRunner().invoke(main, ["encode", str(source), "-o", str(tmp_path / "bad.tok"), "--level", "9"])
    assert r.exit_code == 1 and "--level 9 is not a level" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad.tok").exists()


def test_a_tiny_model_ladder_from_a_file(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ladder file beside a model's weights is what `--quality` walks: scale and bits per point."""
    import tokcodec.ladder as ladder_module

    monkeypatch.setattr(ladder_module, "MODELS_DIR", tmp_path)
    ladder_module._shipped.cache_clear()
    torch.manual_seed(0)
    model = Tokenizer(TokenizerConfig(name="tiny-ladder", channels=(16, 32, 32), blocks_per_level=1, norm_groups=8,
                                      lfq=LFQConfig(bits=10, levels=(4, 10)))).eval()
    ladder_path("tiny-ladder", tmp_path).write_text(json.dumps(
        {"points": [{"level": 0, "scale": 0.5}, {"level": 0, "scale": 1}, {"level": 1, "scale": 2}], "default": 1}))
    try:
        got = []
        for q in range(3):
            out = tmp_path / f"q{q}.tok"
            tokcodec.encode_file(source, out, model=model, quality=q, chunk_frames=9)
            info = tokcodec.tok_info(out)
            got.append((info["quality"], tuple(info["coded_size"]), info["bits"]))
            tokcodec.decode_file(out, tmp_path / f"q{q}.mp4", model=model)
        assert got == [(0, (32, 24), 4), (1, (64, 48), 4), (2, (128, 96), 10)]
        with pytest.raises(ValueError, match="quality 3 is not available"):
            tokcodec.encode_file(source, tmp_path / "x.tok", model=model, quality=3)
        ladder_path("tiny-ladder", tmp_path).write_text(json.dumps({"points": [{"level": 5, "scale": 1}], "default": 0}))
        ladder_module._shipped.cache_clear()
        with pytest.raises(ValueError, match="levels \\[5\\] are not levels of the model .*tiny-ladder"):
            tokcodec.encode_file(source, tmp_path / "x.tok", model=model)
    finally:
        ladder_module._shipped.cache_clear()
