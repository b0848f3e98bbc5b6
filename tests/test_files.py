"""encode / decode / info / tokens / pack, through the CLI and the Python API."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from media import audio_seconds, make_av_source, make_tone_source, noise_frames, scene_cut_frames, smooth_frames

import tokcodec
from tokcodec.api import video_psnr
from tokcodec.bitstream.entropy import EntropyPrior
from tokcodec.cli import main
from tokcodec.codec import DEFAULT_MODEL
from tokcodec.codec import load_tokenizer
from tokcodec.priors import load_prior
from tokcodec.codec.clips import coded_size
from tokcodec.codec.io import iter_frames, probe, write_video
from tokcodec.ladder import model_ladder
from tokcodec.streaming.rate_control import HysteresisSearch
from tokcodec.streaming.refine import COARSE_WEIGHT, DEFAULT_STEPS, RefineConfig, asked_refine, default_refine


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def default_grid(width: int = 64, height: int = 48) -> tuple[int, int]:
    """(H', W') of the tokens `encode` makes of a frame at the default point of the shipped ladder."""
    model = load_tokenizer(DEFAULT_MODEL)
    w, h = coded_size(width, height, model_ladder(model.config).for_frame(None, width, height).scale)
    return model.token_shape(1, h, w)[1:]


LADDER_POINTS = len(model_ladder(load_tokenizer(DEFAULT_MODEL).config).points)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "in.mp4"
    make_av_source(path, n=22, fps=25)  # 64x48, AAC audio; chunks of 9 frames -> 9, 9, 4
    return path


@pytest.fixture(scope="module")
def tok(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "in.tok"
    r = cli("encode", str(source), "-o", str(out), "--chunk-frames", "9", "-q")
    assert r.exit_code == 0, r.output
    return out


def test_encode_decode_keeps_geometry_rate_and_audio(source: Path, tok: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    r = cli("decode", str(tok), "-o", str(out), "-q")
    assert r.exit_code == 0 and r.output == ""
    info, src = probe(out), probe(source)
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, src.fps, 22)
    assert info.has_audio and abs(audio_seconds(out) - audio_seconds(source)) < 0.05


def test_info_json(tok: Path) -> None:
    d = json.loads(cli("info", str(tok), "--json").output)
    assert {"width", "height", "frames", "fps", "model", "quality", "chunks", "bytes", "bits_per_token", "bpp"} <= set(d)
    assert (d["width"], d["height"], d["frames"], d["fps"], d["chunks"]) == (64, 48, 22, "25/1", 3)
    assert d["bytes"] == tok.stat().st_size and d["model"] == DEFAULT_MODEL
    assert d["bpp"] == pytest.approx(8 * d["bytes"] / (22 * 64 * 48))
    assert d["audio_bytes"] > 0 and d["video_bpp"] == pytest.approx(8 * (d["bytes"] - d["audio_bytes"]) / (22 * 64 * 48))
    assert re.search(r"64x48( \(coded at \d+x\d+\))?, 22 frames", cli("info", str(tok)).output)
    prior = load_prior(d["model"], d["bits"])  # the shipped model codes with its shipped entropy prior
    assert prior is not None and d["entropy_prior"] == f"{prior.id:08x}"


def test_a_file_whose_prior_is_missing_fails_cleanly(tok: Path, tmp_path: Path, monkeypatch) -> None:
    """A decoder without the entropy prior the file names refuses its tokens
    in one line; the metadata stays readable."""
    archive = tmp_path / "t.npz"
    assert cli("tokens", str(tok), "-o", str(archive)).exit_code == 0
    monkeypatch.setattr("tokcodec.files.prior_for", lambda header: None)
    monkeypatch.setattr("tokcodec.token_archive.prior_for", lambda header: None)
    assert cli("info", str(tok)).exit_code == 0
    for args, out in [(("decode", str(tok)), "o.mp4"), (("tokens", str(tok)), "o.npz"), (("pack", str(archive)), "o.tok")]:
        r = cli(*args, "-o", str(tmp_path / out))
        assert r.exit_code == 1 and "entropy prior" in r.output and "does not have" in r.output, r.output
        assert r.output.count("\n") == 1 and not (tmp_path / out).exists()


def test_fit_prior_writes_a_loadable_prior_per_level(source: Path, tmp_path: Path) -> None:
    r = cli("fit-prior", str(source), "-o", str(tmp_path), "--max-chunks", "1", "--net-steps", "20",
            "--net-hidden", "16,24")
    assert r.exit_code == 0, r.output
    model = load_tokenizer()
    levels = model.config.lfq.level_bits
    for bits in levels:
        prior = EntropyPrior.load(tmp_path / f"{model.config.name}.prior-k{bits}.npz")
        assert prior.bits == bits and f"{prior.id:08x}" in r.output
        # every level has nets: 6 bits one, each level above the chain of the one below and a net on top
        assert [(n.bits, n.side_bits) for n in prior.nets] == [(6, b) for b in range(0, bits, 6)]
        for net in prior.nets:
            assert [w.shape[1] for w in net.weights] == [16, 24, 2 ** net.bits]
        if bits > 6:
            below = EntropyPrior.load(tmp_path / f"{model.config.name}.prior-k{bits - 6}.npz")
            assert [n.digest for n in prior.nets[:-1]] == [n.digest for n in below.nets]
    assert "6-bit context net:" in r.output and "12-bit top bits' context net:" in r.output
    assert "30-bit top bits' context net:" in r.output and "5 context nets and" in r.output
    r = cli("fit-prior", str(source), "-o", str(tmp_path), "--net-hidden", "16")
    assert r.exit_code == 2 and "two positive widths" in r.output
    from tokcodec.context_net_fit import ContextNetConfig  # the help states the defaults it cannot import lazily

    help_text = " ".join(cli("fit-prior", "--help").output.split())
    config = ContextNetConfig()
    assert f"[default: {config.steps}," in help_text and f"[default: {config.hidden[0]},{config.hidden[1]}]" in help_text
    r = cli("fit-prior", str(source), "-o", str(tmp_path / "missing"))
    assert r.exit_code != 0 and "missing" in r.output


def test_the_net_trains_on_the_tokens_encode_writes(source: Path, tmp_path: Path) -> None:
    """fit-prior's context net learns from the tokens `encode` writes at its
    defaults: the default quality's scale and level, the hysteresis chosen
    per chunk (in float32: bfloat16 may flip a latent near its threshold),
    before refinement (which prices the bits with a net, the one being fitted)."""
    from tokcodec.priors import video_token_chunks
    from tokcodec.streaming.rate_control import HysteresisSearch

    tokcodec.encode_file(source, tmp_path / "a.tok", chunk_frames=9, precision="fp32", refine=RefineConfig())
    written = [c.tokens for c in tokcodec.read_tokens(tmp_path / "a.tok")]
    model = load_tokenizer()
    bits = model.level_bits(model_ladder(model.config).point(None).level)
    fitted = list(video_token_chunks([source], model, 9, None, HysteresisSearch(), None, bits))
    assert len(fitted) == len(written) == 3
    assert all(np.array_equal(a, b) for a, b in zip(fitted, written))


def test_token_chunks_at_several_scales_code_each_size_once(source: Path) -> None:
    from tokcodec.priors import video_token_chunks

    model = load_tokenizer()
    one = [list(video_token_chunks([source], model, 9, 1, 0.2, s, 6)) for s in (1.0, 2.0)]
    both = list(video_token_chunks([source], model, 9, 1, 0.2, (1.0, 1.0, 2.0), 6))
    assert len(both) == 2 and all(np.array_equal(a, b[0]) for a, b in zip(both, one))


def test_range_decodes_the_same_frames_from_only_its_chunks(tok: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full.mp4", tmp_path / "part.mp4"
    tokcodec.decode_file(tok, full, lossless=True)
    report = tokcodec.decode_file(tok, part, start=10, frames=5, lossless=True)
    assert report.chunks == 1  # frames 10..14 all live in chunk 1
    assert np.array_equal(np.stack(list(iter_frames(part))), np.stack(list(iter_frames(full)))[10:15])
    assert tokcodec.decode_file(tok, tmp_path / "tail.mp4", start=20, frames=100).frames == 2


def test_tokens_and_pack_round_trip(tok: Path, tmp_path: Path) -> None:
    npz, packed = tmp_path / "t.npz", tmp_path / "p.tok"
    assert cli("tokens", str(tok), "-o", str(npz)).exit_code == 0
    assert cli("pack", str(npz), "-o", str(packed)).exit_code == 0
    a, b = list(tokcodec.read_tokens(tok)), list(tokcodec.read_tokens(packed))
    assert [c.frame_range for c in a] == [range(0, 9), range(9, 18), range(18, 22)]
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b)) and len(a) == len(b) == 3
    assert packed.read_bytes() == tok.read_bytes()  # audio and metadata included
    with tokcodec.open_tok(tok) as r:
        assert any(c.layers.cb is not None for c in r.chunks())  # the chroma layers made the trip too


def test_an_archive_from_before_chroma_layers_packs_its_luma_layers(tok: Path, tmp_path: Path) -> None:
    """A (chunks, 4) layer_index (1.7's `tokcodec tokens`) holds each chunk's Y' layer alone."""
    import zipfile

    from tokcodec.token_archive import read_array, write_array

    npz, old, packed = tmp_path / "t.npz", tmp_path / "old.npz", tmp_path / "p.tok"
    assert cli("tokens", str(tok), "-o", str(npz)).exit_code == 0
    with zipfile.ZipFile(npz) as src, zipfile.ZipFile(old, "w") as dst:
        index, values = read_array(src, "layer_index"), read_array(src, "layer_values")
        assert index.shape == (3, 3, 4)
        keep = np.concatenate([np.ones(n, bool) if plane == 0 else np.zeros(n, bool)
                               for row in index for plane, n in enumerate(row[:, 3])])
        for item in src.infolist():
            if item.filename not in ("layer_index.npy", "layer_values.npy"):
                dst.writestr(item, src.read(item))
        write_array(dst, "layer_index", index[:, 0])
        write_array(dst, "layer_values", values[keep])
    assert cli("pack", str(old), "-o", str(packed)).exit_code == 0
    with tokcodec.open_tok(tok) as a, tokcodec.open_tok(packed) as b:
        for x, y in zip(a.chunks(), b.chunks()):
            assert (x.layers.y is None) == (y.layers.y is None) and y.layers.cb is None and y.layers.cr is None
            assert x.layers.y is None or np.array_equal(x.layers.y.values, y.layers.y.values)


def test_read_tokens_range(tok: Path) -> None:
    chunks = list(tokcodec.read_tokens(tok, start=9, frames=9))
    assert len(chunks) == 1 and chunks[0].tokens.shape == (3, *default_grid())


def test_api_encode_report(source: Path, tmp_path: Path) -> None:
    r = tokcodec.encode_file(source, tmp_path / "a.tok", chunk_frames=17)
    h, w = default_grid()
    assert (r.frames, r.chunks, r.tokens) == (22, 2, 5 * h * w + 2 * h * w)  # 17 frames + 5 frames
    assert r.bytes == (tmp_path / "a.tok").stat().st_size
    assert r.audio_bytes == tokcodec.tok_info(tmp_path / "a.tok")["audio_bytes"] > 0


def _plane_errors(video: Path, source: Path) -> np.ndarray:
    """Mean squared error of Y', Cb and Cr (BT.601, full range) of `video`'s frames against `source`'s."""
    out = np.stack(list(iter_frames(video))).astype(np.float32)
    src = np.stack(list(iter_frames(source))).astype(np.float32)
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
    return np.square((out - src) @ m.T).reshape(-1, 3).mean(axis=0)


def test_the_coarse_layers_are_sent_where_they_pay_and_added_back(source: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.tok", tmp_path / "b.tok", tmp_path / "c.tok"
    # one search for all three, so that their tokens are the same (by default the search depends on
    # the layers: `refine.with_layers`; checked with the command line at the end)
    search = RefineConfig(steps=DEFAULT_STEPS, coarse=COARSE_WEIGHT)
    ra = tokcodec.encode_file(source, a, chunk_frames=9)
    rb = tokcodec.encode_file(source, b, chunk_frames=9, luma_layer=False, chroma_layer=False, refine=search)
    rc = tokcodec.encode_file(source, c, chunk_frames=9, chroma_layer=False, refine=search)
    ia, ib, ic = tokcodec.tok_info(a), tokcodec.tok_info(b), tokcodec.tok_info(c)
    assert (ia["layer_chunks"], ib["layer_chunks"], ib["layer_bytes"]) == (ra.layers, 0, 0) and ra.layers >= 1
    assert ra.layer_bytes == ia["layer_bytes"] > rc.layer_bytes == ic["layer_bytes"] > 0
    assert ia["layer_planes"]["y"] == ic["layer_planes"]["y"] >= 1 and ic["layer_planes"]["cb"] == 0
    assert ia["layer_planes"]["cb"] >= 1 and ia["layer_planes"]["cr"] >= 1
    for r in (ra, rc):
        assert r.bytes - rb.bytes == r.layer_bytes + 4 * r.chunks  # and a layer size per chunk
        assert r.token_bytes == rb.token_bytes  # the same tokens: the layers are measured after them
    for tok, flag in ((a, 2), (b, 0), (c, 1)):
        with tokcodec.open_tok(tok) as r:
            assert r.header.luma_layer == flag
    assert "coarse layers in" in cli("info", str(a)).output and "coarse layers" not in cli("info", str(b)).output
    errors = {}
    for tok in (a, b, c):
        tokcodec.decode_file(tok, tmp_path / f"{tok.stem}.mp4", lossless=True)
        errors[tok.stem] = _plane_errors(tmp_path / f"{tok.stem}.mp4", source)
    assert errors["c"][0] < errors["b"][0]  # the Y' layer
    assert np.all(errors["a"][1:] < errors["c"][1:])  # the Cb and Cr layers
    assert abs(errors["a"][0] - errors["c"][0]) < 0.02 * errors["c"][0]  # which leave Y' be
    for flags, options in ((("--no-luma-layer", "--no-chroma-layer"), {"luma_layer": False, "chroma_layer": False}),
                           (("--no-chroma-layer",), {"chroma_layer": False}), ((), {})):
        r = cli("encode", str(source), "-o", str(tmp_path / "d.tok"), "--chunk-frames", "9", *flags, "-q", "--force")
        tokcodec.encode_file(source, tmp_path / "e.tok", chunk_frames=9, force=True, **options)
        assert r.exit_code == 0 and (tmp_path / "d.tok").read_bytes() == (tmp_path / "e.tok").read_bytes()
    assert a.read_bytes() == (tmp_path / "e.tok").read_bytes()  # the default searches as `search` does


def test_files_ask_decoders_to_sharpen_and_decode_can_decline(source: Path, tok: Path, tmp_path: Path) -> None:
    """.tok 1.9: the encoder records an unsharp mask (`codec.sharpen`, on by default), every decoder applies it
    last; `--sharpen 0` writes none, `decode --no-sharpen` ignores it. The tokens are the same either way."""
    from tokcodec.codec.sharpen import DEFAULT_SHARPEN, sharpen

    assert json.loads(cli("info", str(tok), "--json").output)["sharpen"] == [0.5, 1.5, 2.0]
    assert "decoders sharpen the luma: amount 0.5, sigma 1.5 px, threshold 2" in cli("info", str(tok)).output
    plain, strong = tmp_path / "plain.tok", tmp_path / "strong.tok"
    for path, amount in ((plain, "0"), (strong, "1")):
        r = cli("encode", str(source), "-o", str(path), "--chunk-frames", "9", "--sharpen", amount)
        assert r.exit_code == 0, r.output
        assert ("decoders sharpen the luma: amount 1, sigma 1.5 px, threshold 2" in r.output) == (amount == "1")
    assert json.loads(cli("info", str(plain), "--json").output)["sharpen"] == [0.0, 0.0, 0.0]
    assert "sharpen" not in cli("info", str(plain)).output
    assert json.loads(cli("info", str(strong), "--json").output)["sharpen"] == [1.0, 1.5, 2.0]
    infos = [tokcodec.tok_info(p) for p in (tok, plain, strong)]
    assert len({(i["token_bytes"], i["layer_bytes"], i["bytes"]) for i in infos}) == 1  # two header bytes either way

    def decoded(path: Path, *flags: str) -> np.ndarray:
        out = tmp_path / f"{path.stem}{''.join(flags)}.mp4"
        r = cli("decode", str(path), "-o", str(out), "--lossless", "-q", *flags)
        assert r.exit_code == 0, r.output
        return np.stack(list(iter_frames(out)))

    soft = decoded(tok, "--no-sharpen")
    assert np.array_equal(soft, decoded(plain)) and np.array_equal(soft, decoded(plain, "--no-sharpen"))
    sharp = decoded(tok)
    assert np.array_equal(sharp, sharpen(soft, DEFAULT_SHARPEN))
    assert np.abs(decoded(strong).astype(int) - soft).mean() > np.abs(sharp.astype(int) - soft).mean() > 0
    r = cli("encode", str(source), "-o", str(tmp_path / "bad.tok"), "--sharpen", "16", "-q")
    assert r.exit_code == 2 and "--sharpen" in r.output and not (tmp_path / "bad.tok").exists()


def test_decode_sharpens_at_the_amount_a_viewer_asks_for(source: Path, tok: Path, tmp_path: Path) -> None:
    """`decode --sharpen-amount A`: the file's mask (sigma, threshold) at amount A, as a sharpness setting;
    a file that asks for none gets the default mask's sigma and threshold; 0 = none; refused with --no-sharpen."""
    from tokcodec.codec.sharpen import Sharpen, sharpen

    plain = tmp_path / "plain.tok"
    assert cli("encode", str(source), "-o", str(plain), "--chunk-frames", "9", "--sharpen", "0", "-q").exit_code == 0

    def decoded(path: Path, *flags: str) -> np.ndarray:
        out = tmp_path / f"{path.stem}{''.join(flags)}.mp4"
        r = cli("decode", str(path), "-o", str(out), "--lossless", "-q", *flags)
        assert r.exit_code == 0, r.output
        return np.stack(list(iter_frames(out)))

    soft = decoded(tok, "--no-sharpen")
    assert np.array_equal(decoded(tok, "--sharpen-amount", "1.5"), sharpen(soft, Sharpen(1.5, 1.5, 2.0)))
    assert np.array_equal(decoded(plain, "--sharpen-amount", "1"), sharpen(soft, Sharpen(1.0, 1.5, 2.0)))
    assert np.array_equal(decoded(tok, "--sharpen-amount", "0"), soft)
    out = tmp_path / "x.mp4"
    r = cli("decode", str(tok), "-o", str(out), "--no-sharpen", "--sharpen-amount", "1")
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        "tokcodec: error: --no-sharpen and --sharpen-amount contradict each other: leave out one of them"]
    assert not out.exists()
    r = cli("decode", str(tok), "-o", str(out), "--sharpen-amount", "16")
    assert r.exit_code == 2 and "--sharpen-amount" in r.output and not out.exists()
    with tokcodec.open_tok(tok) as reader:
        assert tokcodec.files.decoder_sharpen(reader.header, 0.3) == Sharpen(0.3125, 1.5, 2.0)  # 1/16ths


# ---------------------------------------------------------------- bad input


def _patch_header(data: bytearray, offset: int, value: bytes) -> bytearray:
    data[offset : offset + len(value)] = value
    size = struct.unpack_from("<I", data, 6)[0]
    struct.pack_into("<I", data, 10 + size, zlib.crc32(bytes(data[: 10 + size])))
    return data


def bad_file(kind: str, tok: Path, tmp_path: Path) -> tuple[Path, str]:
    data = bytearray(tok.read_bytes())
    with tokcodec.open_tok(tok) as r:
        chunk1 = r.entries[1].offset
    name_len = data[10]
    if kind == "not-video":
        return _write(tmp_path / "x.mp4", b"hello, not a video\n" * 20), "not a video file"
    if kind == "empty-video":
        return _write(tmp_path / "x.mp4", b""), "empty file"
    if kind == "empty-tok":
        return _write(tmp_path / "x.tok", b""), "empty file"
    if kind == "truncated":
        return _write(tmp_path / "x.tok", bytes(data[: chunk1 + 30])), "truncated .tok file: 9 of 22 frames present"
    if kind == "flipped":
        data[chunk1 + 40] ^= 0x01
        return _write(tmp_path / "x.tok", bytes(data)), "chunk 1 is corrupt (CRC mismatch)"
    if kind == "other-weights":
        _patch_header(data, 11 + name_len, bytes(8))
        return _write(tmp_path / "x.tok", bytes(data)), f"made with other weights of {DEFAULT_MODEL}"
    if kind == "version":
        _patch_header(data, 4, b"\x07\x00")
        return _write(tmp_path / "x.tok", bytes(data)), "unsupported .tok version 7.0"
    raise AssertionError(kind)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["not-video", "empty-video", "empty-tok", "truncated", "flipped", "other-weights", "version"])
def test_bad_input_gets_one_line_and_leaves_nothing(kind: str, tok: Path, tmp_path: Path) -> None:
    bad, message = bad_file(kind, tok, tmp_path)
    out = tmp_path / ("o.tok" if bad.suffix == ".mp4" else "o.mp4")
    command = "encode" if bad.suffix == ".mp4" else "decode"
    r = cli(command, str(bad), "-o", str(out))
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    assert r.stderr.startswith("tokcodec: error: ") and r.stderr.count("\n") == 1
    assert message in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_start_beyond_the_end(tok: Path, tmp_path: Path) -> None:
    r = cli("decode", str(tok), "-o", str(tmp_path / "o.mp4"), "--start", "22")
    assert r.exit_code == 1
    assert r.stderr == f"tokcodec: error: {tok}: start frame 22 is beyond the end of the video (22 frames)\n"
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("command", ["encode", "decode", "tokens", "pack"])
def test_existing_output_is_not_overwritten_without_force(command: str, source: Path, tok: Path, tmp_path: Path) -> None:
    npz = tmp_path / "t.npz"
    tokcodec.export_tokens(tok, npz)
    src = {"encode": source, "decode": tok, "tokens": tok, "pack": npz}[command]
    out = tmp_path / "existing"
    out.write_bytes(b"precious")
    r = cli(command, str(src), "-o", str(out))
    assert r.exit_code == 1 and "already exists (use --force to overwrite)" in r.stderr
    assert out.read_bytes() == b"precious"
    assert cli(command, str(src), "-o", str(out), "--force").exit_code == 0
    assert out.read_bytes() != b"precious"


def test_bad_options(source: Path, tok: Path, tmp_path: Path) -> None:
    r = cli("encode", str(source), "-o", str(tmp_path / "a.tok"), "--chunk-frames", "8")
    assert r.exit_code == 1 and "--chunk-frames must be 1 + 4k" in r.stderr
    r = cli("encode", str(source), "-o", str(tmp_path / "a.tok"), "--quality", str(LADDER_POINTS))
    assert r.exit_code == 1 and f"quality {LADDER_POINTS} is not available" in r.stderr
    r = cli("pack", str(source), "-o", str(tmp_path / "a.tok"))
    assert r.exit_code == 1 and "not a token archive" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_real_process_prints_no_traceback(tok: Path, tmp_path: Path) -> None:
    bad, _ = bad_file("flipped", tok, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tokcodec", "decode", str(bad), "-o", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == f"tokcodec: error: {bad}: chunk 1 is corrupt (CRC mismatch)\n"


def test_audio_that_cannot_be_stored_is_dropped_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "adpcm.avi"
    make_tone_source(src, seconds=0.4, codec="adpcm_ima_wav")
    r = cli("encode", str(src), "-o", str(tmp_path / "a.tok"), "-q")
    assert r.exit_code == 0
    assert r.stderr == f"tokcodec: warning: {src}: adpcm_ima_wav audio cannot be stored in a .tok; the output has no audio\n"
    assert tokcodec.tok_info(tmp_path / "a.tok")["audio"] is None
    assert cli("decode", str(tmp_path / "a.tok"), "-o", str(tmp_path / "a.mp4"), "-q").exit_code == 0


def test_encode_only_the_first_frames(source: Path, tmp_path: Path) -> None:
    r = cli("encode", str(source), "-o", str(tmp_path / "a.tok"), "--frames", "10", "--chunk-frames", "9", "-q")
    assert r.exit_code == 0
    info = tokcodec.tok_info(tmp_path / "a.tok")
    assert (info["frames"], info["chunks"]) == (10, 2)
    tokcodec.decode_file(tmp_path / "a.tok", tmp_path / "a.mp4")
    assert probe(tmp_path / "a.mp4").frames == 10
    assert abs(audio_seconds(tmp_path / "a.mp4") - 10 / 25) < 0.05  # the audio follows the frames


def test_encode_ends_a_chunk_at_a_scene_cut(source: Path, tok: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    frames = scene_cut_frames(12, 10)
    write_video(cut, frames, 25, lossless=True)
    r = cli("encode", str(cut), "-o", str(tmp_path / "a.tok"), "--chunk-frames", "9", "--refine", "0")
    assert r.exit_code == 0 and "1 chunk(s) ended early at a scene cut" in r.output
    with tokcodec.open_tok(tmp_path / "a.tok") as reader:  # the cut frame 12 starts a chunk
        assert [(e.first_frame, e.frames) for e in reader.entries] == [(0, 9), (9, 3), (12, 9), (21, 1)]
    assert tokcodec.tok_info(tmp_path / "a.tok")["short_chunks"] == 1
    assert "4 chunks of up to 9 frames (1 ended early: at scene cuts" in cli("info", str(tmp_path / "a.tok")).output
    tokcodec.decode_file(tmp_path / "a.tok", tmp_path / "a.mp4", lossless=True)
    decoded = list(iter_frames(tmp_path / "a.mp4"))
    assert len(decoded) == 22 and video_psnr(cut, tmp_path / "a.mp4") > 20
    r = cli("encode", str(cut), "-o", str(tmp_path / "b.tok"), "--chunk-frames", "9", "--refine", "0", "--no-scene-cuts",
            "-q")
    with tokcodec.open_tok(tmp_path / "b.tok") as reader:
        assert r.exit_code == 0 and [e.frames for e in reader.entries] == [9, 9, 4]
    # a clip without a cut codes the same bytes either way
    r = cli("encode", str(source), "-o", str(tmp_path / "c.tok"), "--chunk-frames", "9", "--no-scene-cuts", "-q")
    assert r.exit_code == 0 and (tmp_path / "c.tok").read_bytes() == tok.read_bytes()


def test_encode_with_refinement(source: Path, tmp_path: Path) -> None:
    # the search itself is tested in test_streaming.py; here: the option reaches it, and the
    # default is two steps (`refine.DEFAULT_STEPS`)
    runs = {"plain": ["--refine", "0"], "default": [], "one": ["--refine", "1"], "two": ["--refine", "2"],
            "four": ["--refine", "4"]}
    tokens = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.tok"
        r = cli("encode", str(source), "-o", str(out), "--frames", "9", "--chunk-frames", "9", "-q", *extra)
        assert r.exit_code == 0, r.output
        tokens[name] = next(tokcodec.read_tokens(out)).tokens
    assert DEFAULT_STEPS == 2 and np.array_equal(tokens["default"], tokens["two"])
    for a, b in (("plain", "one"), ("plain", "two"), ("two", "four")):
        assert tokens[a].shape == tokens[b].shape and not np.array_equal(tokens[a], tokens[b]), (a, b)
    # a segment whose last asked step still gained 3% takes one more (`RefineConfig.extra`): here
    # the first step gains that much and the second not, so one step and two give the same tokens
    assert np.array_equal(tokens["one"], tokens["two"])
    r = cli("encode", str(source), "-o", str(tmp_path / "said.tok"), "--frames", "9", "--chunk-frames", "9")
    assert r.exit_code == 0 and "refined 2 steps," in r.output, r.output
    # a rate or SSIM weight alone refines by the default steps; no option: the encoder's default (None)
    r = cli("encode", str(source), "-o", str(tmp_path / "rate.tok"), "--frames", "9", "--chunk-frames", "9",
            "--refine-rate", "0.3", "--refine", "1")
    assert r.exit_code == 0 and "refined 1 step," in r.output, r.output
    assert asked_refine() is None and asked_refine(None, 0.3) == RefineConfig(steps=DEFAULT_STEPS, rate=0.3)
    assert asked_refine(0) == RefineConfig() and asked_refine(None, None, 0.05).steps == DEFAULT_STEPS
    # the API's default too, and RefineConfig() is no refinement
    api = {name: tmp_path / f"api-{name}.tok" for name in ("default", "plain")}
    assert tokcodec.encode_file(source, api["default"], max_frames=9, chunk_frames=9).refine_steps == DEFAULT_STEPS
    assert tokcodec.encode_file(source, api["plain"], max_frames=9, chunk_frames=9,
                                refine=RefineConfig()).refine_steps == 0
    assert np.array_equal(next(tokcodec.read_tokens(api["default"])).tokens, tokens["two"])
    assert np.array_equal(next(tokcodec.read_tokens(api["plain"])).tokens, tokens["plain"])
    # with both layers the search leaves the coarse error to them (`refine.with_layers`); without, not
    def tokens_of(name: str, **options) -> np.ndarray:
        tokcodec.encode_file(source, tmp_path / f"{name}.tok", max_frames=9, chunk_frames=9, **options)
        return next(tokcodec.read_tokens(tmp_path / f"{name}.tok")).tokens
    plain_error = tokens_of("plain-error", refine=RefineConfig(steps=DEFAULT_STEPS, coarse=1.0))
    assert np.array_equal(tokens_of("coarse", refine=RefineConfig(steps=DEFAULT_STEPS, coarse=COARSE_WEIGHT)),
                          tokens["two"])
    assert not np.array_equal(plain_error, tokens["two"])
    assert np.array_equal(tokens_of("no-chroma-layer", chroma_layer=False), plain_error)
    # by default only frames coded at up to 1080p's pixel count (memory, time), and never on onnxruntime
    assert default_refine(1920 * 1080).steps == DEFAULT_STEPS and default_refine(1920 * 1080 + 1).steps == 0
    assert default_refine(3840 * 2160).steps == 0
    assert default_refine(64 * 48, torch_engine=False).steps == 0
    # and `encode --help` says so
    assert f"[default: {DEFAULT_STEPS} up to 1080p's pixel count coded" in " ".join(cli("encode", "--help").output.split())
    refined = tmp_path / "two.tok"
    tokcodec.decode_file(refined, tmp_path / "a.mp4")
    assert probe(tmp_path / "a.mp4").frames == 9
    for bad in (["--refine", "-1"], ["--refine", "2", "--refine-ssim", "-1"], ["--refine-rate", "-0.5"]):
        r = cli("encode", str(source), "-o", str(tmp_path / "bad.tok"), *bad)
        assert r.exit_code == 2 and not (tmp_path / "bad.tok").exists(), bad


@pytest.mark.parametrize("mode", ["auto", "auto-decode"])
def test_encode_with_the_hysteresis_chosen_per_chunk(source: Path, tmp_path: Path, mode: str) -> None:
    # the choice itself is tested in test_rate_control.py; here: the option reaches it
    out = tmp_path / "auto.tok"
    r = cli("encode", str(source), "-o", str(out), "--frames", "18", "--chunk-frames", "9", "--hysteresis", mode)
    assert r.exit_code == 0, r.output
    chosen = re.search(r"hysteresis per chunk: (.*)", r.output).group(1)
    assert sum(int(n) for n in re.findall(r"x(\d+)", chosen)) == 2  # one per chunk
    report = tokcodec.encode_file(source, tmp_path / "api.tok", chunk_frames=9, max_frames=18, hysteresis=mode)
    assert len(report.thresholds) == 2 and set(report.thresholds) <= set(HysteresisSearch().thresholds)
    fixed = {}  # the tokens of a plain encode at each chosen threshold
    for i, (chunk, h) in enumerate(zip(tokcodec.read_tokens(out), report.thresholds)):
        assert f"{h:g} x" in chosen  # the CLI and the API chose alike
        if h not in fixed:
            path = tmp_path / f"{h}.tok"
            assert tokcodec.encode_file(source, path, chunk_frames=9, max_frames=18, hysteresis=h).thresholds == [h] * 2
            fixed[h] = list(tokcodec.read_tokens(path))
        assert np.array_equal(chunk.tokens, fixed[h][i].tokens)
    tokcodec.decode_file(out, tmp_path / "a.mp4")
    assert probe(tmp_path / "a.mp4").frames == 18
    for bad in ("-0.1", "nan", "half"):
        r = cli("encode", str(source), "-o", str(tmp_path / "bad.tok"), "--hysteresis", bad)
        assert r.exit_code == 2 and "--hysteresis" in r.output and not (tmp_path / "bad.tok").exists(), bad
    with pytest.raises(ValueError, match="'auto-decode'"):
        tokcodec.encode_file(source, tmp_path / "bad.tok", hysteresis="best")
    assert not (tmp_path / "bad.tok").exists()


def test_encode_at_a_finer_grid_decodes_to_the_source_size(source: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`encode --scale 2`: the tokenizer codes the frames at twice the size (a token grid
    twice as fine each way); the decoder returns the source's size, torch or onnxruntime."""
    plain, scaled = tmp_path / "plain.tok", tmp_path / "scaled.tok"
    for out, extra in ((plain, ["--scale", "1"]), (scaled, ["--scale", "2"])):
        r = cli("encode", str(source), "-o", str(out), "--frames", "9", "--chunk-frames", "9", "-q", *extra)
        assert r.exit_code == 0, r.output
    d = json.loads(cli("info", str(scaled), "--json").output)
    assert (d["width"], d["height"], d["coded_size"]) == (64, 48, [128, 96]) and d["token_grid"] == [3, 12, 16]
    assert json.loads(cli("info", str(plain), "--json").output)["token_grid"] == [3, 6, 8]
    assert "coded at 128x96" in cli("info", str(scaled)).output
    reference = np.stack(list(iter_frames(source)))[:9].astype(float)
    psnr = {}
    for tok in (plain, scaled):
        tokcodec.decode_file(tok, tmp_path / "out.mp4", lossless=True, force=True)
        frames = np.stack(list(iter_frames(tmp_path / "out.mp4"))).astype(float)
        assert frames.shape == (9, 48, 64, 3)
        psnr[tok] = 10 * np.log10(255**2 / np.mean((frames - reference) ** 2))
    assert psnr[scaled] > psnr[plain] - 1.0, psnr  # resampling both ways costs little on smooth frames
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        monkeypatch.setenv("TOKCODEC_CACHE", str(tmp_path / "cache"))
        r = cli("decode", str(scaled), "-o", str(tmp_path / "ort.mp4"), "--lossless", "--onnx", "auto", "-q")
        assert r.exit_code == 0, r.output
        frames = np.stack(list(iter_frames(tmp_path / "ort.mp4"))).astype(float)
        assert frames.shape == (9, 48, 64, 3)
    for bad in ("5", "0.1", "x"):
        r = cli("encode", str(source), "-o", str(tmp_path / "bad.tok"), "--scale", bad)
        assert r.exit_code == 2 and not (tmp_path / "bad.tok").exists(), bad
    with pytest.raises(ValueError, match="--scale"):
        tokcodec.encode_file(source, tmp_path / "bad.tok", scale=8.0)
    assert not (tmp_path / "bad.tok").exists()
    monkeypatch.setattr(tokcodec.files, "MAX_SIZE", 100)  # 64x48 at 2x is 128 wide
    with pytest.raises(ValueError, match="larger than the 100 pixels"):
        tokcodec.encode_file(source, tmp_path / "bad.tok", scale=2.0)
    assert not (tmp_path / "bad.tok").exists()


def test_token_archive_is_a_plain_npz(tok: Path, tmp_path: Path) -> None:
    npz = tmp_path / "t.npz"
    tokcodec.export_tokens(tok, npz)
    with np.load(npz) as z:
        assert z["tokens"].shape == (3, 3, *default_grid()) and z["tokens"].dtype == np.int32
        assert z["chunk_frames"].tolist() == [9, 9, 4]
        assert json.loads(str(z["meta"]))["model"] == DEFAULT_MODEL
        first = next(tokcodec.read_tokens(tok))
        assert np.array_equal(z["tokens"][0], first.tokens)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(npz.read_bytes()[:200])
    r = cli("pack", str(cut), "-o", str(tmp_path / "p.tok"))
    assert r.exit_code == 1 and "not a token archive" in r.stderr
    assert not (tmp_path / "p.tok").exists()


def test_damaged_token_archive_fails_cleanly(tok: Path, tmp_path: Path) -> None:
    npz = tmp_path / "t.npz"
    tokcodec.export_tokens(tok, npz)
    data = bytearray(npz.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the compressed tokens entry
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    r = cli("pack", str(bad), "-o", str(tmp_path / "p.tok"))
    assert r.exit_code == 1 and r.stderr.startswith("tokcodec: error: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "p.tok").exists()


def test_quality_7_is_coded_by_two_context_nets(source: Path, tmp_path: Path) -> None:
    """The shipped 12-bit prior holds entropy model 4's nets: quality 7's tokens
    (12 bits) are coded by the 6-bit net and the net of the bits above, and decode."""
    out = tmp_path / "q7.tok"
    tokcodec.encode_file(source, out, quality=7, chunk_frames=9, max_frames=9)
    info = tokcodec.tok_info(out)
    assert (info["quality"], info["bits"], info["entropy_model"]) == (7, 12, 4)
    tokcodec.decode_file(out, tmp_path / "q7.mp4")
    assert probe(tmp_path / "q7.mp4").frames == 9


@pytest.mark.parametrize("level", [2, 3, 4])
def test_levels_above_12_bits_are_coded_by_a_chain_of_nets(source: Path, tmp_path: Path, level: int) -> None:
    """Large frames' top points code 18 to 30 bits per token (the pixel cap
    trades scale for bits): the shipped priors of those levels hold model 4's
    chain of 6-bit nets, which codes them, and the tokens decode as written."""
    model = load_tokenizer()
    bits = model.config.lfq.level_bits[level]
    prior = load_prior(model.config.name, bits)
    assert [(n.bits, n.side_bits) for n in prior.nets] == [(6, b) for b in range(0, bits, 6)]
    out = tmp_path / f"l{level}.tok"
    tokcodec.encode_file(source, out, scale=1.0, level=level, chunk_frames=9, max_frames=9)
    info = tokcodec.tok_info(out)
    assert (info["bits"], info["entropy_model"], info["entropy_prior"]) == (bits, 4, f"{prior.id:08x}")
    assert max(int(c.tokens.max()) for c in tokcodec.read_tokens(out)) >= 1 << (bits - 6)  # the top net's bits are used
    tokcodec.decode_file(out, tmp_path / f"l{level}.mp4")
    assert probe(tmp_path / f"l{level}.mp4").frames == 9


def test_quality_levels_pick_bits_of_the_ladder(source: Path, tmp_path: Path) -> None:
    from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    model = Tokenizer(TokenizerConfig(name="tiny-ladder", channels=(16, 32, 32), blocks_per_level=1, norm_groups=8,
                                      lfq=LFQConfig(bits=10, levels=(4, 10)))).eval()
    sizes = []
    for q, bits in enumerate((4, 10)):
        out = tmp_path / f"q{q}.tok"
        tokcodec.encode_file(source, out, model=model, quality=q, chunk_frames=9)
        info = tokcodec.tok_info(out)
        assert (info["quality"], info["bits"]) == (q, bits)
        assert max(int(c.tokens.max()) for c in tokcodec.read_tokens(out)) < 2**bits
        tokcodec.decode_file(out, tmp_path / f"q{q}.mp4", model=model)
        assert probe(tmp_path / f"q{q}.mp4").frames == 22
        sizes.append(info["token_bytes"])
    assert sizes[0] < sizes[1]
    assert tokcodec.tok_info(tokcodec.encode_file(source, tmp_path / "d.tok", model=model).output)["quality"] == 1  # top
    with pytest.raises(ValueError, match="quality 2 is not available"):
        tokcodec.encode_file(source, tmp_path / "x.tok", model=model, quality=2)
    assert not (tmp_path / "x.tok").exists()
    r = cli("encode", str(source), "-o", str(tmp_path / "y.tok"), "--quality", str(LADDER_POINTS))
    assert r.exit_code == 1 and f"quality {LADDER_POINTS} is not available" in r.output
    assert not (tmp_path / "y.tok").exists()


def test_onnxruntime_encodes_and_decodes_files(source: Path, tok: Path, tmp_path: Path) -> None:
    """`encode`/`decode --onnx DIR`: onnxruntime gives torch's float32 tokens
    (but for rare latents at a threshold) and frames (within a level or two
    of rounding); an export of other weights is refused in one line, and so
    are refinement and choosing the hysteresis by decoding, which need torch,
    and bfloat16."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    export = tmp_path / "onnx"
    r = cli("export-onnx", "-o", str(export))
    assert r.exit_code == 0, r.output
    fp32 = tmp_path / "fp32.tok"  # torch unrefined, as --onnx encodes by default
    for out, extra in ((fp32, ["--precision", "fp32", "--refine", "0"]), (tmp_path / "ort.tok", ["--onnx", str(export)])):
        r = cli("encode", str(source), "-o", str(out), "--chunk-frames", "9", "-q", "--hysteresis", "0.2", *extra)
        assert r.exit_code == 0, r.output
    a, b = (np.concatenate([c.tokens for c in tokcodec.read_tokens(p)]) for p in (fp32, tmp_path / "ort.tok"))
    assert a.shape == b.shape and (a != b).mean() < 0.01
    r = cli("encode", str(source), "-o", str(tmp_path / "no.tok"), "--refine", "2", "--onnx", str(export))
    assert r.exit_code == 1 and "cannot refine" in r.output and not (tmp_path / "no.tok").exists()
    # the threshold chosen from the latent: onnxruntime's latent, the same choices as torch's
    auto = tmp_path / "auto-fp32.tok", tmp_path / "auto-ort.tok"
    for out, extra in zip(auto, (["--precision", "fp32", "--refine", "0"], ["--onnx", str(export)])):
        r = cli("encode", str(source), "-o", str(out), "--chunk-frames", "9", "--hysteresis", "auto", *extra)
        assert r.exit_code == 0 and "hysteresis per chunk:" in r.output, r.output
    a, b = (np.concatenate([c.tokens for c in tokcodec.read_tokens(p)]) for p in auto)
    assert a.shape == b.shape and (a != b).mean() < 0.01
    r = cli("encode", str(source), "-o", str(tmp_path / "no.tok"), "--hysteresis", "auto-decode", "--onnx", str(export))
    assert r.exit_code == 1 and "cannot choose the hysteresis by decoding" in r.output and not (tmp_path / "no.tok").exists()
    # a long chunk weighed at each split point from onnxruntime's latent: the chunks torch chooses
    wakes = tmp_path / "wakes.mp4"  # still for 9 frames, then noise
    write_video(wakes, [smooth_frames(1, 48, 64)[0]] * 9 + noise_frames(16, 48, 64), 25, lossless=True)
    split = tmp_path / "split-fp32.tok", tmp_path / "split-ort.tok"
    for out, extra in zip(split, (["--precision", "fp32", "--refine", "0"], ["--onnx", str(export)])):
        r = cli("encode", str(wakes), "-o", str(out), "--chunk-frames", "25", "--chunk-split", "9", "--no-scene-cuts",
                "-q", *extra)
        assert r.exit_code == 0, r.output
    with tokcodec.open_tok(split[0]) as p, tokcodec.open_tok(split[1]) as q:
        assert [e.frames for e in p.entries] == [e.frames for e in q.entries] == [17, 8]
    r = cli("decode", str(tok), "-o", str(tmp_path / "no.mp4"), "--precision", "bf16", "--onnx", str(export))
    assert r.exit_code == 1 and "computes in float32" in r.output and not (tmp_path / "no.mp4").exists()
    for out, extra in ((tmp_path / "torch.mp4", ["--precision", "fp32"]), (tmp_path / "ort.mp4", ["--onnx", str(export)])):
        r = cli("decode", str(tok), "-o", str(out), "--lossless", "-q", *extra)
        assert r.exit_code == 0, r.output
    a, b = (np.stack(list(iter_frames(tmp_path / f))).astype(int) for f in ("torch.mp4", "ort.mp4"))
    assert a.shape == b.shape == (22, 48, 64, 3)
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.01
    manifest = json.loads((export / "manifest.json").read_text())
    (export / "manifest.json").write_text(json.dumps({**manifest, "fingerprint": "0" * 16}))
    r = cli("decode", str(tok), "-o", str(tmp_path / "bad.mp4"), "--onnx", str(export))
    assert r.exit_code == 1 and "an export of" in r.output and not (tmp_path / "bad.mp4").exists()
    r = cli("encode", str(source), "-o", str(tmp_path / "bad.tok"), "--onnx", str(export))
    assert r.exit_code == 1 and "an export of" in r.output and not (tmp_path / "bad.tok").exists()
    r = cli("decode", str(tok), "-o", str(tmp_path / "bad.mp4"), "--onnx", str(tmp_path / "none"))
    assert r.exit_code == 2 and "no such folder" in r.output


def test_precision_option_reaches_the_networks(source: Path, tok: Path, tmp_path: Path) -> None:
    """`--precision bf16` codes and decodes within rounding of fp32 (the search
    itself is tested in test_precision.py); a precision that is not one is refused."""
    for cmd, src in (("encode", source), ("decode", tok), ("reconstruct", source)):
        r = cli(cmd, str(src), "-o", str(tmp_path / "bad.out"), "--precision", "fp16")
        assert r.exit_code == 2 and "fp16" in r.output and not (tmp_path / "bad.out").exists()
    for p in ("fp32", "bf16"):
        # a fixed threshold: with "auto" a rounding difference can also tip a chunk's choice of threshold
        for name, refine in (("plain", ["--refine", "0"]), ("refined", [])):
            r = cli("encode", str(source), "-o", str(tmp_path / f"{p}-{name}.tok"), "--chunk-frames", "9", "-q",
                    "--precision", p, "--hysteresis", "0.2", *refine)
            assert r.exit_code == 0, r.output
            r = cli("decode", str(tmp_path / f"{p}-{name}.tok"), "-o", str(tmp_path / f"{p}-{name}.mp4"), "--lossless",
                    "-q", "--precision", "fp32")
            assert r.exit_code == 0, r.output
        r = cli("decode", str(tok), "-o", str(tmp_path / f"{p}.mp4"), "--lossless", "-q", "--precision", p)
        assert r.exit_code == 0, r.output
    a, b = (np.concatenate([c.tokens for c in tokcodec.read_tokens(tmp_path / f"{p}-plain.tok")]) for p in ("fp32", "bf16"))
    assert a.shape == b.shape and (a != b).mean() < 0.1  # only latents near a threshold flip (measured: 7%)
    # the search amplifies those flips (13% of the tokens differ after two steps), so its
    # tokens are held to their result: as close to the source in bfloat16 as in float32
    psnr = {p: video_psnr(source, tmp_path / f"{p}-refined.mp4") for p in ("fp32", "bf16")}
    assert psnr["bf16"] > psnr["fp32"] - 0.1, psnr  # measured: 21.555 against 21.551 dB
    a, b = (np.stack(list(iter_frames(tmp_path / f"{p}.mp4"))).astype(float) for p in ("fp32", "bf16"))
    assert a.shape == b.shape == (22, 48, 64, 3) and 10 * np.log10(255**2 / np.mean((a - b) ** 2)) > 45


def test_onnx_auto_exports_once_into_the_cache(tok: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("TOKCODEC_CACHE", str(tmp_path / "cache"))
    r = cli("decode", str(tok), "-o", str(tmp_path / "a.mp4"), "-q", "--lossless", "--onnx", "auto")
    assert r.exit_code == 0, r.output
    (export,) = (tmp_path / "cache" / "onnx").iterdir()
    info = tokcodec.tok_info(tok)
    assert export.name == f"{info['model']}-{info['fingerprint']}" and (export / "manifest.json").is_file()
    made = (export / "manifest.json").stat().st_mtime_ns
    r = cli("decode", str(tok), "-o", str(tmp_path / "b.mp4"), "-q", "--lossless", "--onnx", "auto")
    assert r.exit_code == 0 and (export / "manifest.json").stat().st_mtime_ns == made  # reused
    a, b = (np.stack(list(iter_frames(tmp_path / f))).astype(int) for f in ("a.mp4", "b.mp4"))
    assert a.shape == b.shape == (22, 48, 64, 3) and np.abs(a - b).max() <= 1  # onnxruntime's float rounding


def test_encode_ends_a_long_chunk_after_its_first_frames_where_the_picture_moves(tmp_path: Path) -> None:
    steady, moving = tmp_path / "steady.mp4", tmp_path / "moving.mp4"
    write_video(steady, [smooth_frames(1, 48, 64)[0]] * 17, 25, lossless=True)
    write_video(moving, noise_frames(17, 48, 64), 25, lossless=True)

    def encode(src: Path, name: str, *extra: str) -> tuple[list[int], str]:
        r = cli("encode", str(src), "-o", str(tmp_path / name), "--chunk-frames", "17", "--chunk-split", "9",
                "--refine", "0", "--no-scene-cuts", *extra)  # (noise: a cut at its second frame)
        assert r.exit_code == 0, r.output
        with tokcodec.open_tok(tmp_path / name) as reader:
            return [e.frames for e in reader.entries], r.output

    assert encode(steady, "steady.tok")[0] == [17]
    lengths, said = encode(moving, "moving.tok")
    assert lengths == [9, 8] and "1 chunk(s) ended after 9 frames where the picture moves" in said
    assert "2 chunks of up to 17 frames (1 ended early: at scene cuts or where the picture moves)" in cli(
        "info", str(tmp_path / "moving.tok")).output
    assert encode(moving, "whole.tok", "--chunk-split", "0")[0] == [17]
    assert encode(moving, "nine.tok", "--chunk-frames", "9")[0] == [9, 8]
    # The chunks hold the tokens that chunks of those lengths give: the encoder's latent of the
    # first 9 frames, weighed for the split, is the one a 9-frame chunk has (it is causal).
    tokens = {name: [c.tokens for c in tokcodec.read_tokens(tmp_path / name)] for name in
              ("moving.tok", "whole.tok", "nine.tok")}
    assert all(np.array_equal(a, b) for a, b in zip(tokens["moving.tok"], tokens["nine.tok"], strict=True))
    r = cli("encode", str(steady), "-o", str(tmp_path / "fixed.tok"), "--chunk-frames", "17", "--chunk-split", "0",
            "--refine", "0", "--no-scene-cuts", "-q")
    assert r.exit_code == 0 and (tmp_path / "fixed.tok").read_bytes() == (tmp_path / "steady.tok").read_bytes()
    tokcodec.decode_file(tmp_path / "moving.tok", tmp_path / "moving-out.mp4", lossless=True)
    assert len(list(iter_frames(tmp_path / "moving-out.mp4"))) == 17
    r = cli("encode", str(moving), "-o", str(tmp_path / "bad.tok"), "--chunk-frames", "17", "--chunk-split", "8")
    assert r.exit_code != 0 and "--chunk-split must be 1 + 4k" in r.output and not (tmp_path / "bad.tok").exists()


def test_encode_weighs_a_long_chunk_again_where_its_picture_starts_moving(tmp_path: Path) -> None:
    source = tmp_path / "wakes.mp4"  # a still picture for 9 frames, then noise: chunks of up to 25 weighed at 9 and 17
    write_video(source, [smooth_frames(1, 48, 64)[0]] * 9 + noise_frames(16, 48, 64), 25, lossless=True)

    def encode(name: str, *extra: str) -> tuple[list[int], str]:
        r = cli("encode", str(source), "-o", str(tmp_path / name), "--refine", "0", "--no-scene-cuts", *extra)
        assert r.exit_code == 0, r.output
        with tokcodec.open_tok(tmp_path / name) as reader:
            return [e.frames for e in reader.entries], r.output

    lengths, said = encode("split.tok", "--chunk-frames", "25", "--chunk-split", "9")
    assert lengths == [17, 8] and "1 chunk(s) ended after 9 or 17 frames where the picture moves" in said
    assert encode("fixed.tok", "--chunk-frames", "17")[0] == [17, 8]
    split, fixed = ([c.tokens for c in tokcodec.read_tokens(tmp_path / n)] for n in ("split.tok", "fixed.tok"))
    assert all(np.array_equal(a, b) for a, b in zip(split, fixed, strict=True))
