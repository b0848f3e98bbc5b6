"""Training: a few steps of a tiny model, exact resume, export, data sampling."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from media import smooth_frames

from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig
from tokcodec.codec.data import ClipSampler, DataConfig, to_unit
from tokcodec.codec.losses import LUMA, luma, lowpass, reconstruction_loss
from tokcodec.codec.io import write_video
from tokcodec.codec.train import TrainConfig, build_config, export, grow_state, learning_rate, parser, quant_mix, train


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("media")
    write_video(d / "a.mp4", smooth_frames(12, 48, 64), 25)
    write_video(d / "b.mp4", smooth_frames(10, 40, 40), 25)
    write_video(d / "still.mp4", smooth_frames(1, 40, 50), 1)  # one frame, like an image: 1-frame clips only
    (d / "notes.txt").write_text("not media")
    return d


def tiny_config(media: Path, steps: int = 4) -> TrainConfig:
    model = TokenizerConfig(name="tiny", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8,
                            lfq=LFQConfig(bits=10))
    data = DataConfig(paths=(str(media),), clip_frames=5, crop=32, image_prob=0.3)
    return TrainConfig(model=model, data=data, steps=steps, batch=2, lr_warmup=2, quant_start=1, quant_ramp=2,
                       disc_start=2, log_every=1, eval_every=2, ckpt_every=2, seed=3)


def test_sampler_cuts_random_clips(media: Path) -> None:
    s = ClipSampler(DataConfig(paths=(str(media),), clip_frames=5, crop=32, image_prob=0.0), log=False)
    assert len(s.videos) == 3 and len(s.clip_videos) == 2
    rng = np.random.default_rng(0)
    x = s.sample(3, rng)
    assert x.shape == (3, 3, 5, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert s.sample(2, rng, frames=1).shape == (2, 3, 1, 32, 32)
    # the uint8 batch (what moves to a GPU) is the same draw before its conversion
    u = s.sample_uint8(3, np.random.default_rng(5))
    assert u.dtype == torch.uint8 and torch.equal(to_unit(u), s.sample(3, np.random.default_rng(5)))
    with pytest.raises(ValueError, match="no usable training media"):
        ClipSampler(DataConfig(paths=(str(media / "notes.txt"),)), log=False)


def test_a_source_named_twice_is_drawn_twice_as_often(media: Path) -> None:
    """How the shipped decoder's last fine-tune weighted the corpus (bench/RESULTS.md): the
    sampler draws its videos uniformly, and a file or folder named k times is k of them."""
    cfg = DataConfig(paths=(str(media / "a.mp4"), str(media / "a.mp4"), str(media / "b.mp4")), clip_frames=5,
                     crop=32, image_prob=0.0)
    s = ClipSampler(cfg, log=False)
    assert [len(s.videos[i]) for i in s.clip_videos] == [12, 12, 10]  # a.mp4 twice, b.mp4 once
    twice = ClipSampler(replace(cfg, paths=(str(media), str(media))), log=False)
    assert twice.frames == 2 * ClipSampler(replace(cfg, paths=(str(media),)), log=False).frames


def test_sampler_mixes_in_procedural_graphics(media: Path) -> None:
    cfg = DataConfig(paths=(str(media),), clip_frames=5, crop=32, image_prob=0.0, max_side=64, graphics_clips=4)
    plain = ClipSampler(cfg, log=False)
    assert plain.graphics == []  # off by default: a run's draws stay as they were
    mixed = ClipSampler(replace(cfg, graphics=1.0), log=False)
    assert len(mixed.graphics) == 4 and all(g.shape == (17, 48, 64, 3) for g in mixed.graphics)
    x = mixed.sample_uint8(6, np.random.default_rng(0))
    assert x.shape == (6, 3, 5, 32, 32)
    # every clip is cut from a graphics clip (its first frame is a window of one, maybe mirrored)
    for clip in x.permute(0, 2, 3, 4, 1).numpy():
        first = clip[0]
        assert any((np.lib.stride_tricks.sliding_window_view(g[t], first.shape) == f).all((-3, -2, -1)).any()
                   for g in mixed.graphics for t in range(len(g) - 4) for f in (first, first[:, ::-1]))
    with pytest.raises(ValueError, match="graphics"):
        DataConfig(graphics=1.5)


def test_schedules() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, lr_warmup=10, quant_start=20, quant_ramp=10)
    assert learning_rate(cfg, 0) == pytest.approx(0.1) and learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 100) == pytest.approx(0.1)
    assert quant_mix(cfg, 19) == 0 and quant_mix(cfg, 24) == pytest.approx(0.5) and quant_mix(cfg, 40) == 1


def test_resume_is_exact_and_export_loads(media: Path, tmp_path: Path) -> None:
    cfg = tiny_config(media)
    straight = train(cfg, tmp_path / "a")
    train(TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path / "b")  # stops at step 2
    resumed = train(cfg, tmp_path / "b")  # picks up the checkpoint and finishes
    assert straight.step == resumed.step == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[key]), key
    log = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and "psnr_ema" in log[1] and "d_loss" in log[3]
    path = export(tmp_path / "a", tmp_path / "models", name="tiny")
    assert path.name == "tiny.safetensors"
    from tokcodec.codec import registry

    saved = registry.MODELS_DIR
    registry.MODELS_DIR = tmp_path / "models"
    try:
        loaded = registry.load_tokenizer("tiny")
        # Shipped in float16: the weights are the EMA weights rounded to half precision.
        for key, value in straight.ema.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value.half().float()), key
    finally:
        registry.MODELS_DIR = saved


def test_bf16_autocast_trains_with_float32_quantiser(media: Path, tmp_path: Path) -> None:
    """--amp bf16 (meant for GPUs; CPU autocast runs the same code): the
    networks run in bfloat16, the LFQ terms and losses stay float32, and the
    discriminator trains too."""
    cfg = replace(tiny_config(media), amp="bf16")
    trainer = train(cfg, tmp_path / "amp")
    rows = [json.loads(line) for line in (tmp_path / "amp" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and "d_loss" in rows[-1]
    assert all(np.isfinite(r["loss"]) for r in rows)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = trainer.model(video)
    assert out.reconstruction.dtype == torch.bfloat16
    assert out.lfq.quantized.dtype == torch.float32 and out.lfq.loss.dtype == torch.float32


def test_a_run_folder_refuses_another_config(media: Path, tmp_path: Path) -> None:
    train(tiny_config(media, steps=1), tmp_path / "r")
    other = TrainConfig(**{**tiny_config(media, steps=1).__dict__, "lr": 1e-3})
    with pytest.raises(ValueError, match="another configuration"):
        train(other, tmp_path / "r")


def test_grow_state_keeps_what_the_old_model_computed() -> None:
    """Growing the latent from 6 to 10 channels: the grown model decodes the
    old model's first 6 channels exactly as before (new inputs weigh 0)."""
    small = Tokenizer(TokenizerConfig(name="t", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8,
                                      lfq=LFQConfig(bits=6))).eval()
    big = Tokenizer(TokenizerConfig(name="t", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8,
                                    lfq=LFQConfig(bits=10, levels=(6, 10)))).eval()
    big.load_state_dict(grow_state(big.state_dict(), small.state_dict()))
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    tokens = small.encode(video)
    assert torch.equal(big.encode(video, bits=6), tokens)
    assert torch.allclose(big.decode(tokens, bits=6), small.decode(tokens), atol=1e-6)
    assert torch.allclose(big.decode(big.encode(video)), small.decode(tokens), atol=1e-6)


def test_grow_state_cuts_a_ladder_to_its_leading_bits() -> None:
    """A model cut from 10 to its first 6 bits codes exactly as the old one's level of 6 bits."""
    cfg = TokenizerConfig(name="t", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8,
                          lfq=LFQConfig(bits=10, levels=(6, 10)))
    big = Tokenizer(cfg).eval()
    small = Tokenizer(replace(cfg, lfq=LFQConfig(bits=6))).eval()
    small.load_state_dict(grow_state(small.state_dict(), big.state_dict()))
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    tokens = small.encode(video)
    assert torch.equal(big.encode(video, bits=6), tokens)
    assert torch.allclose(small.decode(tokens), big.decode(tokens, bits=6), atol=1e-6)


def test_grow_state_recuts_an_upsampling_to_a_finer_grid() -> None:
    """Halving spatial_downsample drops the decoder's 2x2 depth-to-space: the new
    projection gives the old upsampled features averaged over each 2x2 block."""
    from tokcodec.codec.layers import depth_to_space

    cfg = TokenizerConfig(name="t", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8, lfq=LFQConfig(bits=6))
    coarse = Tokenizer(cfg).eval()
    fine = Tokenizer(replace(cfg, spatial_downsample=4)).eval()
    state = grow_state(fine.state_dict(), coarse.state_dict())
    fine.load_state_dict(state)
    assert torch.equal(state["encoder.downs.0.conv.weight"], coarse.state_dict()["encoder.downs.0.conv.weight"])
    h = torch.randn(1, 16, 3, 4, 5)
    with torch.no_grad():
        up_coarse = depth_to_space(coarse.decoder.ups[1](h), 2, 2)
        up_fine = depth_to_space(fine.decoder.ups[1](h), 2, 1)
    assert torch.allclose(torch.nn.functional.avg_pool3d(up_coarse, (1, 2, 2)), up_fine, atol=1e-6)


def test_grow_state_recuts_a_patch_4_model_to_patch_2() -> None:
    """Patch 4 -> 2: the new stem sees the frame as the old one sees it upscaled 2x (nearest),
    and the new output patch is the old one averaged over 2x2 pixels."""
    from tokcodec.codec.layers import depth_to_space

    cfg = TokenizerConfig(name="t", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8, lfq=LFQConfig(bits=6))
    p4 = Tokenizer(cfg).eval()
    p2 = Tokenizer(replace(cfg, patch_size=2)).eval()
    assert [s for _, s in p2.config.transition_strides()] == [2, 2]
    p2.load_state_dict(grow_state(p2.state_dict(), p4.state_dict()))
    frame = torch.rand(1, 3, 1, 8, 12)
    with torch.no_grad():
        upscaled = frame.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        assert torch.allclose(p2.encoder.stem(frame), p4.encoder.stem(upscaled), atol=1e-5)
        h = torch.randn(1, 16, 3, 4, 5)
        out4 = depth_to_space(p4.decoder.conv_out(h), 1, 4)
        out2 = depth_to_space(p2.decoder.conv_out(h), 1, 2)
        assert torch.allclose(torch.nn.functional.avg_pool3d(out4, (1, 2, 2)), out2, atol=1e-5)
        h = torch.randn(1, 32, 3, 4, 5)
        up4 = depth_to_space(p4.decoder.ups[0](h), 2, 1)
        up2 = depth_to_space(p2.decoder.ups[0](h), 2, 2)
        assert torch.allclose(up2[..., ::2, ::2], up4, atol=1e-6) and torch.allclose(up2[..., 1::2, 1::2], up4, atol=1e-6)


def test_command_line_recuts_the_preset() -> None:
    """`tokcodec train --spatial-downsample 4 --bits 12 --levels ...` re-cuts the default preset
    (its 30-bit ladder is replaced whole, the default level kept where it still exists)."""
    cfg = build_config(parser().parse_args(
        ["v.mp4", "--run", "r", "--spatial-downsample", "4", "--bits", "12", "--levels", "2,4,6,9,12"]))
    assert (cfg.model.spatial_downsample, cfg.model.lfq.bits, cfg.model.lfq.levels) == (4, 12, (2, 4, 6, 9, 12))
    assert cfg.model.lfq.default_quality == 2 and cfg.model.transition_strides() == [(2, 1), (2, 1)]
    cfg = build_config(parser().parse_args(["v.mp4", "--run", "r", "--bits", "8", "--levels", "4,8"]))
    assert cfg.model.lfq.levels == (4, 8) and cfg.model.lfq.default_quality == 1  # level 2 is gone: the top
    cfg = build_config(parser().parse_args(["v.mp4", "--run", "r", "--levels", "4,8", "--bits", "8",
                                            "--default-level", "0"]))
    assert cfg.model.lfq.default_quality == 0


def test_ladder_training_logs_every_level(media: Path, tmp_path: Path) -> None:
    cfg = tiny_config(media, steps=2)
    cfg = TrainConfig(**{**cfg.__dict__, "model": replace(cfg.model, lfq=LFQConfig(bits=10, levels=(5, 10)))})
    train(cfg, tmp_path / "l")
    rows = [json.loads(line) for line in (tmp_path / "l" / "log.jsonl").read_text().splitlines()]
    assert "psnr_ema_5" in rows[-1] and rows[-1]["psnr_ema_5"] > 0


def test_torchrun_ddp_on_cpu(media: Path, tmp_path: Path) -> None:
    """The multi-process path as the README runs it (torchrun, DDP over gloo on a CPU):
    two ranks train with the discriminator on, resume, and stop together on --stop-after."""
    import subprocess
    import sys

    def torchrun(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tokcodec.codec.train", str(media), "--run-dir", str(tmp_path / "run"),
               "--preset", "magvit2-4x8x8-k18", "--channels", "16,16,32", "--blocks", "1", "--bits", "10",
               "--crop", "32", "--clip-frames", "5", "--batch", "2", "--lr-warmup", "2", "--quant-start", "1",
               "--quant-ramp", "2", "--disc-start", "2", "--log-every", "1", "--eval-every", "2",
               "--ckpt-every", "2", "--threads", "1", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    first = torchrun("--steps", "3")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "world 2" in first.stdout and "step 3/3" in first.stdout
    # resumed with more steps and a time limit already passed: rank 0 decides, both stop after one step
    second = torchrun("--steps", "6", "--stop-after", "0")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed" in second.stdout and "step 4/6" in second.stdout and "step 5/6" not in second.stdout
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 4


def test_encoder_only_training_keeps_the_decoder_and_logs_the_rate(media: Path, tmp_path: Path) -> None:
    """--freeze-decoder: every .tok written with the starting weights still
    decodes the same (the decoder, model and EMA, is bit-identical), while
    the encoder moves; --rate logs the latent's bit changes it trades off."""
    cfg = replace(tiny_config(media, steps=3), freeze_decoder=True, rate=0.3, disc_start=10**9)
    torch.manual_seed(cfg.seed)  # as the Trainer seeds its model: the same starting weights
    start = {k: v.clone() for k, v in Tokenizer(cfg.model).state_dict().items()}
    trainer = train(cfg, tmp_path / "enc")
    for weights in (trainer.model.state_dict(), trainer.ema.state_dict()):
        assert all(torch.equal(weights[k], v) for k, v in start.items() if k.startswith("decoder."))
    assert any(not torch.equal(trainer.model.state_dict()[k], v) for k, v in start.items() if k.startswith("encoder."))
    rows = [json.loads(line) for line in (tmp_path / "enc" / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["changes"] < 1 for r in rows) and any(r["changes"] > 0 for r in rows)  # 0: 1-frame clips


def test_decoder_only_training_at_coding_scales(media: Path, tmp_path: Path) -> None:
    """--freeze-encoder: the encoder (so every clip's tokens, and the priors
    fitted to them) is bit-identical while the decoder moves; --scales trains
    on crops coded at those scales, the loss at the crop's own size, and the
    evaluation logs the lowest level's PSNR at each scale; --hysteresis
    trains on the tokens `encode --hysteresis` writes, each step at one of
    its thresholds."""
    cfg = tiny_config(media, steps=4)
    cfg = replace(cfg, model=replace(cfg.model, lfq=replace(cfg.model.lfq, levels=(4, 10))), freeze_encoder=True,
                  scales=(0.5, 1.5), level_weights=(1.0, 0.0), quant_start=0, quant_ramp=1, disc_start=10**9,
                  hysteresis=(0.2, 0.6))
    torch.manual_seed(cfg.seed)
    start = {k: v.clone() for k, v in Tokenizer(cfg.model).state_dict().items()}
    trainer = train(cfg, tmp_path / "dec")
    for weights in (trainer.model.state_dict(), trainer.ema.state_dict()):
        assert all(torch.equal(weights[k], v) for k, v in start.items() if not k.startswith("decoder."))
    assert any(not torch.equal(trainer.model.state_dict()[k], v) for k, v in start.items() if k.startswith("decoder."))
    rows = [json.loads(line) for line in (tmp_path / "dec" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "psnr_ema" in r]
    assert evals and all(np.isfinite(r["psnr_ema_4_x0.5"]) and np.isfinite(r["psnr_ema_4_x1.5"]) for r in evals)
    # a scale codes the crop resampled and compares at the crop's size
    batch = ClipSampler(cfg.data, log=False).sample(2, np.random.default_rng(0))
    out, recon = trainer._scaled_forward(trainer.ema, batch, 1.5)
    assert recon.shape == batch.shape and out.reconstruction.shape[-2:] == (48, 48)
    # the training forward quantises with the encoder's hysteresis, and it holds latents here
    held = trainer.ema(batch, hysteresis=0.5).lfq.tokens
    assert torch.equal(held, trainer.ema.encode(batch, hysteresis=0.5))
    assert not torch.equal(held, trainer.ema.encode(batch))
    # each step draws one of the thresholds (and of the scales)
    drawn = []
    forward = trainer._scaled_forward
    trainer._scaled_forward = lambda *a: drawn.append(a[2:4] + a[-1:]) or forward(*a)
    for _ in range(12):
        trainer.train_step(batch)
    assert {d[2] for d in drawn} == {0.2, 0.6} and {d[0] for d in drawn} == {0.5, 1.5}


def test_train_options_are_checked(media: Path) -> None:
    cfg = tiny_config(media)
    with pytest.raises(ValueError, match="not both"):
        replace(cfg, freeze_encoder=True, freeze_decoder=True)
    with pytest.raises(ValueError, match="level weights"):
        replace(cfg, level_weights=(1.0, 2.0))
    ladder = replace(cfg, model=replace(cfg.model, lfq=replace(cfg.model.lfq, levels=(4, 10))))
    with pytest.raises(ValueError, match="positive sum"):
        replace(ladder, level_weights=(0.0, 0.0))
    with pytest.raises(ValueError, match="positive"):
        replace(cfg, scales=(0.0,))
    with pytest.raises(ValueError, match="hysteresis"):
        replace(cfg, hysteresis=(0.2, -0.1))
    with pytest.raises(ValueError, match="luma weight"):
        replace(cfg, luma_weight=1.5)
    with pytest.raises(ValueError, match="lowpass"):
        replace(cfg, lowpass=-1.0)
    args = parser().parse_args([str(media), "--run", "r", "--scales", "0.5,2", "--levels", "6,12", "--bits", "12",
                                "--level-weights", "3,1", "--freeze-encoder", "--hysteresis", "0.2,0.8"])
    built = build_config(args)
    assert built.scales == (0.5, 2.0) and built.level_weights == (3.0, 1.0) and built.freeze_encoder
    assert built.hysteresis == (0.2, 0.8)
    assert TrainConfig.from_dict(json.loads(json.dumps(asdict(built)))) == built
    # a run configured before several thresholds (one float) still resumes
    old = json.loads(json.dumps(asdict(replace(built, hysteresis=()))))
    assert TrainConfig.from_dict({**old, "hysteresis": 0.2}).hysteresis == (0.2,)
    assert TrainConfig.from_dict({**old, "hysteresis": 0.0}).hysteresis == ()


def test_luma_weighted_loss_ignores_what_luma_cannot_see() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 3, 16, 16) * 1.6 - 0.8
    # a chroma-only error: a colour shift whose BT.601 luma is zero everywhere
    shift = torch.tensor([LUMA[1], -LUMA[0], 0.0]).view(1, 3, 1, 1, 1) * 0.3
    recon = target + shift
    assert torch.allclose(luma(recon), luma(target), atol=1e-6)
    rgb_loss, rgb_parts = reconstruction_loss(recon, target)
    y_loss, y_parts = reconstruction_loss(recon, target, luma_weight=1.0)
    half, _ = reconstruction_loss(recon, target, luma_weight=0.5)
    assert rgb_loss > 0.1 and y_loss.item() < 1e-5 and y_parts["ssim"] > 0.9999
    assert torch.isclose(half, (rgb_loss + y_loss) / 2)
    # the default is the plain RGB loss
    assert rgb_parts["l1"] == pytest.approx((recon - target).abs().mean().item())
    # a luma error counts in both
    dark = target - 0.2
    assert reconstruction_loss(dark, target, luma_weight=1.0)[1]["l1"] == pytest.approx(0.2, rel=1e-4)


def test_lowpass_term_prices_flattened_contrast_not_fine_detail() -> None:
    torch.manual_seed(0)
    ramp = torch.linspace(-0.6, 0.6, 32)
    target = (ramp.view(1, 1, 1, 1, 32) + ramp.view(1, 1, 1, 32, 1)).expand(2, 3, 3, 32, 32) / 2
    # zero-mean detail inside each 8x8 block: a checkerboard the block means cannot see
    checker = (torch.arange(32).view(32, 1) + torch.arange(32).view(1, 32)) % 2 * 0.2 - 0.1
    detailed = target + checker
    flattened = target * 0.9  # the same image with 10% less large-scale contrast
    assert torch.allclose(lowpass(detailed), lowpass(target), atol=1e-6)
    base, parts = reconstruction_loss(detailed, target)
    with_low, low_parts = reconstruction_loss(detailed, target, lowpass_weight=2.0)
    assert "lowpass" not in parts and low_parts["lowpass"] < 1e-6
    assert torch.isclose(with_low, base, atol=1e-5)
    flat, flat_parts = reconstruction_loss(flattened, target, lowpass_weight=2.0)
    plain_flat, _ = reconstruction_loss(flattened, target)
    assert flat_parts["lowpass"] > 0.01
    assert torch.isclose(flat - plain_flat, torch.tensor(2.0 * flat_parts["lowpass"]), rtol=1e-4)
