"""Stateful frame-by-frame coding, ONNX export and onnxruntime parity."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from fake_glibc import install_fake_glibc
from media import smooth_frames
from models import jittered_tokenizer

from tokcodec.cli import main
from tokcodec.codec import Tokenizer, load_tokenizer
from tokcodec.codec.clips import FrameVideo, frames_to_video, video_to_frames
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS
from tokcodec.streaming.refine import (COARSE_WEIGHT, PlaneStep, RefineConfig, change_prices, coarse_weighted_error,
                                      encode_refined, with_layers)
from tokcodec.streaming.stateful import (
    DecoderStep,
    StreamingDecoder,
    StreamingEncoder,
    TorchEngine,
    chunk_latent,
    decode_chunk,
    decoded_segments,
    encode_chunk,
    latent_of,
    latent_tokens,
    to_float,
    to_uint8,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tokcodec.streaming.onnx_export import GRAPHS, export_onnx  # noqa: E402
from tokcodec.streaming.onnx_runtime import OnnxEngine, choose_providers  # noqa: E402


@pytest.fixture(scope="module")
def model() -> Tokenizer:
    return jittered_tokenizer()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.stack(smooth_frames(14, 48, 64))  # a chunk of 9 and 5 frames of a second one


def offline_tokens(model: Tokenizer, frames: np.ndarray, chunk: int, hysteresis: float = 0.0) -> list[np.ndarray]:
    return [model.encode(frames_to_video(frames[i : i + chunk]), hysteresis=hysteresis)[0].numpy()
            for i in range(0, len(frames), chunk)]


def stream_tokens(engine, frames: np.ndarray, chunk: int, bits: int | None = None,
                  hysteresis: float = 0.0) -> list[np.ndarray]:
    enc = StreamingEncoder(engine, chunk, bits, hysteresis=hysteresis)
    out: list[np.ndarray] = []
    grids: list[list[np.ndarray]] = []
    for i, f in enumerate(frames):
        if i % chunk == 0:
            grids.append([])
        tokens = enc.push(f)
        if tokens is not None:
            grids[-1].append(tokens)
    last = enc.flush()
    if last is not None:
        grids[-1].append(last)
    out = [np.stack(g) for g in grids]
    return out


def median_latent(model: Tokenizer, frames: np.ndarray) -> float:
    """A hysteresis threshold that holds about half of this model's latents."""
    with torch.no_grad():
        return float(model.encoder(model.pad(frames_to_video(frames))).abs().median())


@pytest.mark.parametrize("with_hysteresis", [False, True])
def test_streaming_encoder_gives_the_offline_tokens(model: Tokenizer, frames: np.ndarray, with_hysteresis: bool) -> None:
    h = median_latent(model, frames) if with_hysteresis else 0.0
    offline = offline_tokens(model, frames, 9, h)
    streamed = stream_tokens(TorchEngine(model), frames, 9, hysteresis=h)
    assert [g.shape for g in streamed] == [g.shape for g in offline] == [(3, 6, 8), (2, 6, 8)]
    for a, b in zip(streamed, offline):
        assert np.array_equal(a, b)
    if with_hysteresis:  # it did hold bits: the tokens differ from plain quantisation
        plain = offline_tokens(model, frames, 9)
        assert not all(np.array_equal(a, b) for a, b in zip(plain, offline))
    # a whole chunk's latent by the same steps (what `encode --onnx --hysteresis auto` chooses from)
    z = torch.from_numpy(chunk_latent(TorchEngine(model), frames[:9]))
    assert z.shape[2] == 3 and np.array_equal(latent_tokens(z, model.config.bits, h)[0].numpy(), streamed[0])
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        chunk_latent(TorchEngine(model), frames[:8])


def test_streaming_encoder_waits_for_a_whole_step(model: Tokenizer, frames: np.ndarray) -> None:
    enc = StreamingEncoder(TorchEngine(model), 9)
    results = [enc.push(f) is not None for f in frames[:9]]
    assert results == [True, False, False, False, True, False, False, False, True]  # latency = 4 frames


def test_streaming_decoder_gives_the_offline_frames(model: Tokenizer, frames: np.ndarray) -> None:
    grid = offline_tokens(model, frames[:9], 9)[0]
    offline = video_to_frames(model.decode(torch.from_numpy(grid)[None]))
    streamed = np.stack(list(StreamingDecoder(TorchEngine(model)).decode_chunk(grid)))
    assert streamed.shape == offline.shape == (9, 48, 64, 3)
    assert np.abs(streamed.astype(int) - offline).max() <= 1  # float rounding only
    low = grid & 15  # a lower level of the ladder decodes like Tokenizer.decode(bits=4)
    offline_low = video_to_frames(model.decode(torch.from_numpy(low)[None], bits=4))
    streamed_low = np.stack(list(StreamingDecoder(TorchEngine(model), bits=4).decode_chunk(low)))
    assert np.abs(streamed_low.astype(int) - offline_low).max() <= 1


@pytest.mark.parametrize("segment", [5, 9, 13])
def test_segmented_chunks_equal_whole_chunks(model: Tokenizer, frames: np.ndarray, segment: int) -> None:
    # a 13-frame chunk (4 latent frames) in segments of 5 or 9 frames, or whole (13)
    video = frames_to_video(frames[:13])
    h = median_latent(model, frames)
    whole = model.encode(video, hysteresis=h)
    parts = encode_chunk(model, video, hysteresis=h, segment_frames=segment)
    assert parts.shape == whole.shape == (1, 4, 6, 8) and torch.equal(parts, whole)
    low = encode_chunk(model, video, bits=4, hysteresis=h, segment_frames=segment)
    assert torch.equal(low, whole & 15)
    # an odd length is padded as Tokenizer.encode pads it
    assert torch.equal(encode_chunk(model, frames_to_video(frames[:11]), segment_frames=segment),
                       model.encode(frames_to_video(frames[:11])))
    # uint8 frames converted a segment at a time give the same tokens, padded in size too
    assert torch.equal(encode_chunk(model, FrameVideo(frames[:13]), hysteresis=h, segment_frames=segment), whole)
    assert torch.equal(encode_chunk(model, FrameVideo(frames[:11, :45, :61]), segment_frames=segment),
                       model.encode(frames_to_video(frames[:11, :45, :61])))
    for bits, tokens in ((None, whole), (4, whole & 15)):
        offline = model.decode(tokens, size=(13, 48, 64), bits=bits)
        segmented = decode_chunk(model, tokens, (13, 48, 64), bits, segment_frames=segment)
        assert segmented.shape == offline.shape == (1, 3, 13, 48, 64)
        assert (segmented - offline).abs().max() < 1e-4  # float rounding only
        # a segment at a time, cropped to a clip of 11 frames that ends inside the last segment
        parts = list(decoded_segments(model, tokens, (11, 45, 60), bits, segment_frames=segment))
        assert [p.shape[2] for p in parts] == {5: [5, 4, 2], 9: [9, 2], 13: [11]}[segment]
        assert all(p.shape[-2:] == (45, 60) for p in parts)
        assert (torch.cat(parts, dim=2) - offline[:, :, :11, :45, :60]).abs().max() < 1e-4
    with pytest.raises(ValueError, match="segment_frames"):
        encode_chunk(model, video, segment_frames=4)
    with pytest.raises(ValueError, match="larger than the decoded clip"):
        decode_chunk(model, whole, (14, 48, 64), segment_frames=5)


def test_change_prices_make_changes_dear_where_a_plane_stands_still() -> None:
    """A change costs log2((1 - p) / p) bits for a plane whose bits change a
    share p of the time (plus half a change): ~0 at p = 1/2, dear but finite
    for a plane that never changes, and never negative."""
    signs = torch.zeros(1, 3, 5, 2, 2, dtype=torch.bool)  # 16 (frame, position) pairs per plane
    signs[:, 0, 1::2] = True  # plane 0 flips at every frame: 16 of 16 change
    signs[:, 1, 1:3, :, 0] = True  # plane 1: 4 of 16
    price = change_prices(signs).flatten()
    p = torch.tensor([16.5, 4.5, 0.5]) / 17
    assert torch.allclose(price, torch.log2((1 - p) / p).clamp_min(0))
    assert price[0] == 0 and 0 < price[1] < price[2] < 6


def test_plane_step_moves_each_kept_plane_by_lr_rms_along_its_gradient() -> None:
    """A step moves every kept bit plane against its gradient by lr times
    the gradient over that plane's RMS (so each plane's move has RMS lr,
    whatever its gradient's scale), and leaves the dropped planes."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 3, 5, 6, generator=g)
    grad = torch.randn(1, 4, 3, 5, 6, generator=g) * torch.tensor([1e-3, 1.0, 50.0, 7.0]).view(1, 4, 1, 1, 1)
    keep = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 4, 1, 1, 1)
    x = x0.clone().requires_grad_(True)
    x.grad = grad.clone()
    PlaneStep(x, 0.2, keep).step()
    move = (x0 - x).detach()
    for k in range(3):
        by_hand = 0.2 * grad[0, k] / grad[0, k].square().mean().sqrt()
        assert torch.allclose(move[0, k], by_hand, rtol=1e-5, atol=1e-7)
        assert math.isclose(move[0, k].square().mean().sqrt().item(), 0.2, rel_tol=1e-5)
    assert torch.equal(move[0, 3], torch.zeros_like(move[0, 3]))


def test_refinement_finds_tokens_that_decode_closer(model: Tokenizer, frames: np.ndarray) -> None:
    video = frames_to_video(frames[:13])
    h = median_latent(model, frames)
    plain = encode_chunk(model, video, hysteresis=h)
    assert torch.equal(encode_refined(model, video, None, h, RefineConfig(steps=0)), plain)

    def error(tokens: torch.Tensor, bits: int | None = None) -> float:
        return float(((decode_chunk(model, tokens, (13, 48, 64), bits) - video) ** 2).mean())

    refined = encode_refined(model, video, None, h, RefineConfig(steps=8))
    assert refined.shape == plain.shape and not torch.equal(refined, plain)
    assert error(refined) < 0.95 * error(plain)  # measured: 0.88 x (level 4 below: 0.94 x)
    low = encode_refined(model, video, 4, h, RefineConfig(steps=8))  # a lower level: its own search
    assert int(low.max()) < 16 and error(low, 4) < error(plain & 15, 4)
    assert all(p.requires_grad for p in model.parameters())  # left as it was
    # in decoder segments of 1 + 1 and then 1 latent frame (5 and 4 frames), the
    # later ones refined against the caches of the refined earlier ones
    decoded: list[np.ndarray] = []
    segmented = encode_refined(model, video, None, h, RefineConfig(steps=8), segment_frames=5, decoded=decoded)
    assert segmented.shape == plain.shape and error(segmented) < 0.95 * error(plain)  # measured: 0.90 x
    # the same search on uint8 frames that it converts a segment at a time
    assert torch.equal(encode_refined(model, FrameVideo(frames[:13]), None, h, RefineConfig(steps=8),
                                      segment_frames=5), segmented)
    # the kept tokens' decoded segments are what the decoder makes of the tokens, as 8-bit frames
    kept = np.concatenate(decoded)[:13]
    assert kept.dtype == np.uint8 and kept.shape == frames[:13].shape and len(decoded) == 3
    again = video_to_frames(decode_chunk(model, segmented, (13, 48, 64), segment_frames=5))
    # the same floats within 1e-5 before rounding: a code apart at most, where they straddle a half
    assert np.abs(kept.astype(int) - again).max() <= 1 and (kept == again).mean() > 0.999
    with pytest.raises(ValueError):
        RefineConfig(steps=-1)
    with pytest.raises(ValueError):
        RefineConfig(ssim=-0.1)


def test_refinement_hands_kept_memory_back_after_each_segment(model: Tokenizer, frames: np.ndarray,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With TOKCODEC_REUSE_MEMORY=1 the heap is trimmed after every decoder
    segment (and on leaving): it holds one segment's steps at most."""
    libc = install_fake_glibc(monkeypatch)
    video = frames_to_video(frames[:13])
    encode_refined(model, video, None, 0.0, RefineConfig(steps=1), segment_frames=5)  # 3 segments
    assert libc.trims == 3 + 1  # and once on leaving


def test_refinement_takes_extra_steps_only_while_they_gain(model: Tokenizer, frames: np.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    video = frames_to_video(frames[:13])
    h = median_latent(model, frames)
    taken = []  # the steps each run takes, counted at `PlaneStep.step`
    step = PlaneStep.step
    monkeypatch.setattr(PlaneStep, "step", lambda self: (taken.append(1), step(self)))

    def refined(config: RefineConfig) -> tuple[torch.Tensor, int]:
        taken.clear()
        tokens = encode_refined(model, video, None, h, config, segment_frames=5)  # three segments
        return tokens, len(taken)

    # no extra step where none is asked, where the steps are 0, or where none may gain enough (gain 1)
    two, n = refined(RefineConfig(steps=2, extra=0))
    assert n == 2 * 3
    none, n = refined(RefineConfig(steps=0, extra=1))
    assert n == 0 and torch.equal(none, encode_chunk(model, video, hysteresis=h))
    never, n = refined(RefineConfig(steps=2, extra=1, gain=1.0))
    assert n == 2 * 3 and torch.equal(never, two)
    # gain 0: a segment goes on while its loss falls at all; measured here: all three segments
    # take two extra steps, and then the tokens are those of four steps; of four extra, 11 of 12
    every, n = refined(RefineConfig(steps=2, extra=2, gain=0.0))
    assert n == 4 * 3 and torch.equal(every, refined(RefineConfig(steps=4, extra=0))[0])
    assert 5 * 3 < refined(RefineConfig(steps=2, extra=4, gain=0.0))[1] < 6 * 3
    # each segment by itself: with the tiny model one of the three gains more than 1% by its
    # second step, none more than 3% (the default gain)
    assert refined(RefineConfig(steps=2, gain=0.01))[1] == 2 * 3 + 1
    assert refined(RefineConfig(steps=2))[1] == 2 * 3 and (RefineConfig().extra, RefineConfig().gain) == (1, 0.03)
    with pytest.raises(ValueError):
        RefineConfig(extra=-1)
    with pytest.raises(ValueError):
        RefineConfig(gain=1.5)


def test_checkpointed_decoder_blocks_compute_the_same_steps_and_gradients(model: Tokenizer) -> None:
    # `Decoder.checkpointing` (the refinement's at large frames) keeps the blocks' inputs only and
    # recomputes the rest in the backward pass, the streaming caches of a step included
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(1, model.config.bits, 1, 6, 8, generator=g).sign() for _ in range(2)]
    steps = DecoderStep(model, True), DecoderStep(model, False)

    def run(checkpointing: bool) -> tuple[list[torch.Tensor], int]:
        model.decoder.checkpointing = checkpointing
        saved = []
        try:
            latents = [x.clone().requires_grad_(True) for x in z]
            with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
                y0, *caches = steps[0].forward_latent(latents[0])
                y1, *new = steps[1].forward_latent(latents[1], *caches)
            (y0.square().sum() + (y1 - 0.5).square().sum()).backward()
            return [y0, y1, *caches, *new, latents[0].grad, latents[1].grad], sum(saved)
        finally:
            model.decoder.checkpointing = False

    (plain, plain_saved), (again, again_saved) = run(False), run(True)
    assert len(plain) == len(again) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, again))
    assert again_saved < plain_saved / 2  # outside the blocks' checkpoints


def test_refinement_checkpoints_the_decoder_above_a_frame_size(model: Tokenizer, frames: np.ndarray,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import tokcodec.codec.model as model_module
    import tokcodec.streaming.refine as refine
    video, h = frames_to_video(frames[:13]), median_latent(model, frames)
    calls = []
    checkpointed = model_module.checkpointed
    monkeypatch.setattr(model_module, "checkpointed", lambda *a: (calls.append(1), checkpointed(*a))[1])
    config = RefineConfig(steps=2)
    below = encode_refined(model, video, None, h, config, segment_frames=5)  # 48 x 64: below the size
    assert not calls and refine.CHECKPOINT_PIXELS == 1280 * 720
    monkeypatch.setattr(refine, "CHECKPOINT_PIXELS", 48 * 64 - 1)
    assert torch.equal(encode_refined(model, video, None, h, config, segment_frames=5), below) and calls
    assert not model.decoder.checkpointing  # left as it was


def test_coarse_weighted_error_splits_the_error_into_block_means_and_the_rest() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 3, 6, 20, 40, generator=g)
    y = target + torch.randn(target.shape, generator=g)
    assert torch.allclose(coarse_weighted_error(y, target, 1.0), F.mse_loss(y, target))
    # the coarse part, by hand: every block of (4, 16, 16) (smaller at the far edges) as its mean
    e, means = y - target, torch.zeros_like(target)
    for t, i, j in itertools.product((slice(0, 4), slice(4, 6)), (slice(0, 16), slice(16, 20)),
                                     (slice(0, 16), slice(16, 32), slice(32, 40))):
        means[:, :, t, i, j] = e[:, :, t, i, j].mean(dim=(2, 3, 4), keepdim=True)
    coarse, rest = means.square().mean(), (e - means).square().mean()
    assert torch.allclose(coarse_weighted_error(y, target, 0.0), rest, rtol=1e-5)
    assert torch.allclose(coarse_weighted_error(y, target, 0.1), rest + 0.1 * coarse, rtol=1e-5)
    # an error constant over each block is all coarse; fewer frames than a block's make one block
    flat = target + means
    assert float(coarse_weighted_error(flat, target, 0.0)) < 1e-6
    short = target[:, :, :2]
    assert float(coarse_weighted_error(short + 0.5, short, 0.0)) < 1e-6
    # gradients flow as through the plain error
    x = y.clone().requires_grad_(True)
    coarse_weighted_error(x, target, 0.1).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            RefineConfig(coarse=bad)


def test_the_coarse_weight_is_left_to_the_layers_only_where_both_are_sent() -> None:
    assert with_layers(RefineConfig(steps=2), True).coarse == COARSE_WEIGHT < 1
    assert with_layers(RefineConfig(steps=2), False).coarse == 1.0
    assert with_layers(RefineConfig(steps=2, coarse=0.5), True).coarse == 0.5  # asked: kept
    assert with_layers(RefineConfig(steps=2, coarse=0.5), False).coarse == 0.5


def test_torch_engine_uint8_steps_equal_the_numpy_conversions(model: Tokenizer, frames: np.ndarray) -> None:
    """encode_frames/decode_frames convert with torch where the model is; the
    values must be exactly those of to_float/to_uint8 around the float steps."""
    engine = TorchEngine(model)
    z_fast, enc_fast = engine.encode_frames(frames[:1], None)
    z_ref, enc_ref = engine.encode_step(to_float(frames[:1]), None)
    assert np.array_equal(z_fast, z_ref)
    z_fast, _ = engine.encode_frames(frames[1:5], enc_fast)
    z_ref, _ = engine.encode_step(to_float(frames[1:5]), enc_ref)
    assert np.array_equal(z_fast, z_ref)
    tokens = np.random.default_rng(0).integers(0, 1 << 10, (1, 1, 6, 8))
    latent = latent_of(tokens, 10, 10).transpose(0, 2, 1, 3, 4).copy()  # (1, K, 1, H', W')
    out_fast, dec_fast = engine.decode_frames(latent, None)
    video, dec_ref = engine.decode_step(latent, None)
    assert out_fast.dtype == np.uint8 and out_fast.shape == (1, 48, 64, 3)
    assert np.array_equal(out_fast, to_uint8(video))
    out_fast, _ = engine.decode_frames(latent, dec_fast)
    video, _ = engine.decode_step(latent, dec_ref)
    assert np.array_equal(out_fast, to_uint8(video))


@pytest.fixture(scope="module")
def exported(model: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_onnx_export_leaves_the_tokenizer_in_eval_mode(model: Tokenizer, exported: Path) -> None:
    """torch.onnx.export restores each module's mode; the networks must come back in
    eval mode, not in the training mode of the step wrappers around them (the
    networks pick their memory layout by it, `codec.precision.in_fastest_layout`)."""
    assert not any(m.training for m in model.modules())


def test_onnx_export_is_valid_and_matches_torch(model: Tokenizer, frames: np.ndarray, exported: Path) -> None:
    for g in GRAPHS:
        onnx.checker.check_model(str(exported / f"{g}.onnx"))
    engine = OnnxEngine(exported, providers=["CPUExecutionProvider"])
    assert engine.providers == ["CPUExecutionProvider"] and engine.model == "tiny"
    h = median_latent(model, frames)
    offline = offline_tokens(model, frames, 9, h)
    streamed = stream_tokens(engine, frames, 9, hysteresis=h)
    agree = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(streamed, offline)]))
    assert agree >= 0.999
    grid = offline[0]
    reference = np.stack(list(StreamingDecoder(TorchEngine(model)).decode_chunk(grid)))
    decoded = np.stack(list(StreamingDecoder(engine).decode_chunk(grid)))
    assert psnr(decoded, reference) >= 45


def test_onnx_io_binding_gives_the_same_tokens_and_frames(model: Tokenizer, frames: np.ndarray, exported: Path) -> None:
    """The I/O-binding path (what a GPU provider uses: caches stay onnxruntime values
    between steps), run here on the CPU provider against plain numpy feeds."""
    plain = OnnxEngine(exported, providers=["CPUExecutionProvider"])
    bound = OnnxEngine(exported, providers=["CPUExecutionProvider"], io_binding=True)
    assert not plain.io_binding and bound.io_binding
    h = median_latent(model, frames)
    for a, b in zip(stream_tokens(plain, frames, 9, hysteresis=h), stream_tokens(bound, frames, 9, hysteresis=h)):
        assert np.array_equal(a, b)
    grid = offline_tokens(model, frames[:9], 9, h)[0]
    a = np.stack(list(StreamingDecoder(plain).decode_chunk(grid)))
    b = np.stack(list(StreamingDecoder(bound).decode_chunk(grid)))
    assert np.array_equal(a, b)


def test_onnx_shapes_are_dynamic(model: Tokenizer, exported: Path) -> None:
    engine = OnnxEngine(exported, providers=["CPUExecutionProvider"])
    other = np.stack(smooth_frames(5, 32, 96))  # another size than the export's example
    assert [g.shape for g in stream_tokens(engine, other, 5)] == [(2, 4, 12)]
    batch = np.repeat(((other[:1].astype(np.float32) / 127.5) - 1).transpose(3, 0, 1, 2)[None], 2, axis=0)
    latent, caches = engine.encode_step(batch, None)
    assert latent.shape == (2, 10, 1, 4, 12) and all(c.shape[0] == 2 for c in caches)


def test_provider_choice() -> None:
    assert choose_providers()[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="not available"):
        choose_providers(["NoSuchExecutionProvider"])


def test_export_onnx_cli_keeps_what_it_must_not_replace(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("tokcodec.codec.load_tokenizer", lambda name=None: jittered_tokenizer())
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["export-onnx", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "manifest.json").is_file()
    r = CliRunner().invoke(main, ["export-onnx", "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output
    assert CliRunner().invoke(main, ["export-onnx", "-o", str(out), "--force"]).exit_code == 0
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    r = CliRunner().invoke(main, ["export-onnx", "-o", str(precious), "--force"])
    assert r.exit_code == 1 and "not an exported model folder" in r.output
    assert (precious / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_default_model_onnx_parity_on_the_sample_clip(tmp_path: Path) -> None:
    from tokcodec.codec.io import read_clips

    model = load_tokenizer()
    clip = next(iter(read_clips(Path(__file__).resolve().parent.parent / "codec" / "samples" / "sample.mp4", 17, 4)))
    engine = OnnxEngine(export_onnx(model, tmp_path / "default"), providers=["CPUExecutionProvider"])
    offline = offline_tokens(model, clip.frames, 17, DEFAULT_HYSTERESIS)  # as `tokcodec encode` and `serve` code
    streamed = stream_tokens(engine, clip.frames, 17, hysteresis=DEFAULT_HYSTERESIS)
    assert np.mean(streamed[0] == offline[0]) >= 0.999
    reference = video_to_frames(model.decode(torch.from_numpy(offline[0])[None]))
    decoded = np.stack(list(StreamingDecoder(engine).decode_chunk(offline[0])))
    assert psnr(decoded, reference) >= 45


def test_runtime_refuses_an_export_of_another_format(exported: Path, tmp_path: Path) -> None:
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(exported, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["format"]  # what version 1 wrote: its encoders output tokens
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="export the model again"):
        OnnxEngine(old, providers=["CPUExecutionProvider"])
