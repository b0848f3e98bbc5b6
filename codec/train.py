"""Train the tokenizer: `python -m tokcodec.codec.train` or `tokcodec train`.

    tokcodec train DATA... --run runs/t1 [--steps 20000] [--batch 8] ...
    torchrun --nproc_per_node 8 -m tokcodec.codec.train DATA... --run runs/t1   # DDP

The recipe, in order of the step counter:

1. learning-rate warm-up (linear), then cosine decay to 10%;
2. a continuous warm-up: the quantiser output blends from the continuous
   latent to sign(z) over `quant_ramp` steps starting at `quant_start`,
   because LFQ from the first step converges slowly on a CPU budget;
3. reconstruction (L1 + L2 + SSIM) and the LFQ commitment and entropy losses
   throughout; the 3D discriminator (hinge + LeCam) joins at `disc_start`.

AdamW, gradient clipping and EMA weights; a checkpoint holds model, EMA,
optimisers, discriminator, step and every random state, so a resumed run
continues exactly where it stopped. Progress goes to stdout, every logged
step to `RUN/log.jsonl`, and a plot of the losses to `RUN/loss.png`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .clips import coded_size, resize_video, round_to_8_bits
from .config import PRESETS, TokenizerConfig
from .data import ClipSampler, DataConfig
from .lfq import bit_changes, level_mask
from .losses import Discriminator3d, LeCam, generator_adv_loss, hinge_d_loss, psnr, reconstruction_loss
from .model import Tokenizer, crop
from .registry import save_tokenizer


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as RUN/config.json)."""

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 20000
    batch: int = 8
    lr: float = 4e-4
    lr_warmup: int = 500
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    quant_start: int = 1000
    quant_ramp: int = 2000
    l1: float = 1.0
    l2: float = 1.0
    ssim: float = 0.2
    luma_weight: float = 0.0  # share of the reconstruction terms taken on BT.601 luma instead of RGB
    lowpass: float = 0.0  # weight of the L1 term on 8x8-block means (large-scale contrast; losses.lowpass)
    disc_start: int = 10**9  # off unless asked for
    disc_weight: float = 0.1
    disc_lr: float = 1e-4
    lecam_weight: float = 0.001
    log_every: int = 20
    eval_every: int = 200
    ckpt_every: int = 200
    seed: int = 0
    threads: int = 0  # CPU threads for torch (0: leave torch's default)
    amp: str = ""  # "bf16": the networks run under bfloat16 autocast (GPUs); losses and LFQ stay float32
    init_from: str = ""  # checkpoint.pt or .safetensors to start a new run from (see grow_state)
    # Encoder-only training: the decoder (and so every .tok already written) stays
    # exactly as it is, and the encoder learns to give it better latents.
    freeze_decoder: bool = False
    rate: float = 0.0  # weight of bit_changes per pixel: latents that cost fewer bits to send
    # Decoder-only training: the encoder stays exactly as it is, so the tokens of
    # every clip, and so the entropy priors fitted to them, stay valid.
    freeze_encoder: bool = False
    # Coding scales to train at (`encode --scale`): each step draws one, codes its
    # crops resampled by it and takes the loss after resampling back, as decode does.
    scales: tuple[float, ...] = ()
    level_weights: tuple[float, ...] = ()  # how often each ladder level is drawn (default: equally)
    # The encoder's sign hysteresis in training steps (`encode --hysteresis`): with the
    # encoder frozen, the decoder learns from the very tokens that `encode` writes.
    # Several thresholds: each step draws one, as `encode --hysteresis auto` picks
    # one per chunk (empty: plain signs).
    hysteresis: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["model"] = TokenizerConfig.from_dict(d["model"])
        d["data"] = DataConfig(**{**d["data"], "paths": tuple(d["data"]["paths"])})
        d["betas"] = tuple(d["betas"])
        d.setdefault("init_from", "")
        d.setdefault("freeze_decoder", False)
        d.setdefault("rate", 0.0)
        d.setdefault("freeze_encoder", False)
        d["scales"] = tuple(d.get("scales", ()))
        d["level_weights"] = tuple(d.get("level_weights", ()))
        h = d.get("hysteresis", ())
        d["hysteresis"] = tuple(h) if isinstance(h, (list, tuple)) else ((float(h),) if h else ())  # was one float
        return cls(**d)

    def __post_init__(self) -> None:
        if not 0 <= self.luma_weight <= 1:
            raise ValueError(f"luma weight must be in [0, 1], got {self.luma_weight}")
        if self.lowpass < 0:
            raise ValueError(f"lowpass weight must be >= 0, got {self.lowpass}")
        if self.freeze_encoder and self.freeze_decoder:
            raise ValueError("freeze the encoder or the decoder, not both")
        if self.level_weights and len(self.level_weights) != len(self.model.lfq.levels):
            raise ValueError(f"{len(self.level_weights)} level weights for {len(self.model.lfq.levels)} levels")
        if self.level_weights and (min(self.level_weights) < 0 or sum(self.level_weights) <= 0):
            raise ValueError(f"level weights must be >= 0 with a positive sum, got {self.level_weights}")
        if any(h < 0 for h in self.hysteresis):
            raise ValueError(f"hysteresis must be >= 0, got {self.hysteresis}")
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")


# ---------------------------------------------------------------- schedule


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.lr_warmup:
        return cfg.lr * (step + 1) / cfg.lr_warmup
    progress = min(1.0, (step - cfg.lr_warmup) / max(1, cfg.steps - cfg.lr_warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def quant_mix(cfg: TrainConfig, step: int) -> float:
    if step < cfg.quant_start:
        return 0.0
    return min(1.0, (step - cfg.quant_start + 1) / max(1, cfg.quant_ramp))


# ---------------------------------------------------------------- state


class Trainer:
    """Owns the models, optimisers and random state of one run."""

    def __init__(self, cfg: TrainConfig, run: Path, device: torch.device, rank: int = 0, world: int = 1) -> None:
        self.cfg, self.run, self.device, self.rank, self.world = cfg, run, device, rank, world
        torch.manual_seed(cfg.seed)
        self.model = Tokenizer(cfg.model).to(device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        if cfg.freeze_decoder:
            self.model.decoder.requires_grad_(False)
        if cfg.freeze_encoder:  # no gradient reaches the encoder, so autograd skips it: a cheaper step
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.trained = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.trained, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.disc = Discriminator3d().to(device)
        self.lecam = LeCam().to(device)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.99), weight_decay=0.0)
        self.step = 0
        self.rng = np.random.default_rng(cfg.seed + 1000 * rank)
        self.train_model: nn.Module = self.model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            self.disc = nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)

    @property
    def ckpt_path(self) -> Path:
        return self.run / "checkpoint.pt"

    def state(self) -> dict[str, Any]:
        disc = self.disc.module if isinstance(self.disc, nn.parallel.DistributedDataParallel) else self.disc
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "disc": disc.state_dict(),
            "lecam": self.lecam.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_numpy": self.rng.bit_generator.state,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rng_python": random.getstate(),
        }

    def save(self) -> None:
        """Write the checkpoint atomically (a crash mid-write keeps the old one)."""
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, self.ckpt_path)

    def load(self) -> None:
        s = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(s["model"])
        self.ema.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        disc = self.disc.module if isinstance(self.disc, nn.parallel.DistributedDataParallel) else self.disc
        disc.load_state_dict(s["disc"])
        self.lecam.load_state_dict(s["lecam"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step = s["step"]
        if self.world == 1:  # per-rank streams differ; a DDP resume reseeds below
            self.rng.bit_generator.state = s["rng_numpy"]
        else:
            self.rng = np.random.default_rng(self.cfg.seed + 1000 * self.rank + self.step)
        torch.set_rng_state(s["rng_torch"])
        if s["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng_cuda"])
        random.setstate(s["rng_python"])

    # ------------------------------------------------------------ one step
    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        lr = learning_rate(cfg, step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        mix = quant_mix(cfg, step)
        keep = None
        levels = cfg.model.lfq.levels
        if levels:  # nested dropout: each sample is trained at a random level of the ladder
            p = np.array(cfg.level_weights) / sum(cfg.level_weights) if cfg.level_weights else None
            keep = torch.from_numpy(self.rng.choice(np.array(levels), size=batch.shape[0], p=p)).to(batch.device)
        scale = float(self.rng.choice(cfg.scales)) if cfg.scales else 1.0
        hysteresis = cfg.hysteresis[0] if len(cfg.hysteresis) == 1 else 0.0
        if len(cfg.hysteresis) > 1:
            hysteresis = float(self.rng.choice(cfg.hysteresis))
        out, recon = self._scaled_forward(self.train_model, batch, scale, mix, keep, hysteresis)
        rec, parts = reconstruction_loss(recon, batch, cfg.l1, cfg.l2, cfg.ssim, cfg.luma_weight, cfg.lowpass)
        loss = rec if cfg.freeze_encoder else rec + out.lfq.loss  # LFQ's terms only move the encoder
        if cfg.rate:
            mask = level_mask(keep, cfg.model.lfq.bits, recon) if keep is not None else 1
            changes = bit_changes(out.lfq.quantized.float(), mask) / (batch.numel() / batch.shape[1])
            loss = loss + cfg.rate * changes
            parts["changes"] = changes.item()
        use_disc = step >= cfg.disc_start
        if use_disc:
            with self._autocast():
                logits = self.disc(recon)
            g_adv = generator_adv_loss(logits.float())
            loss = loss + cfg.disc_weight * g_adv
            parts["g_adv"] = g_adv.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.trained, cfg.grad_clip).item()
        self.opt.step()
        self._update_ema()
        if use_disc:
            parts.update(self._disc_step(batch, recon.detach()))
        self.step += 1
        parts.update(
            loss=loss.item(), lr=lr, quant_mix=mix, grad_norm=grad_norm, commit=out.lfq.commitment.item(),
            per_sample_entropy=out.lfq.per_sample_entropy.item(), codebook_entropy=out.lfq.codebook_entropy.item(),
        )
        return parts

    def _scaled_forward(self, model: nn.Module, batch: torch.Tensor, scale: float, mix: float = 1.0,
                        keep: torch.Tensor | None = None, hysteresis: float = 0.0) -> tuple[Any, torch.Tensor]:
        """The model's output for `batch` coded at `scale`, and its reconstruction
        (float32) at the batch's own size: resampled to the coded size and rounded
        to 8 bits as `encode` does, padded to the stride, quantised (with the
        encoder's `hysteresis`), decoded and resampled back."""
        h, w = batch.shape[-2:]
        x = batch
        if scale != 1:
            cw, ch = coded_size(w, h, scale)
            x = round_to_8_bits(resize_video(batch, ch, cw))
        size = x.shape[-3:]
        with self._autocast():
            out = model(self.model.pad(x), quant_mix=mix, keep=keep, hysteresis=hysteresis)
        recon = crop(out.reconstruction.float(), tuple(size))
        return out, resize_video(recon, h, w) if scale != 1 else recon

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    def _disc_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        with self._autocast():
            d_real, d_fake = self.disc(real), self.disc(fake)
        d_real, d_fake = d_real.float(), d_fake.float()
        d_loss = hinge_d_loss(d_real, d_fake) + self.cfg.lecam_weight * self.lecam(d_real, d_fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        nn.utils.clip_grad_norm_(self.disc.parameters(), self.cfg.grad_clip)
        self.opt_d.step()
        return {"d_loss": d_loss.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Early on the EMA would mostly average the random init: warm its decay up.
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - decay)

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, float]:
        """PSNR of the EMA and raw models on a fixed batch, fully quantised
        (and of the EMA model at every lower level of the ladder)."""
        self.model.eval()
        out = {"psnr_ema": psnr(self.ema(batch).reconstruction, batch),
               "psnr": psnr(self.model(batch).reconstruction, batch)}
        levels = self.cfg.model.lfq.levels
        for b in levels[:-1]:
            keep = torch.full((batch.shape[0],), b, device=batch.device)
            out[f"psnr_ema_{b}"] = psnr(self.ema(batch, keep=keep).reconstruction, batch)
        low = levels[0] if levels else self.cfg.model.lfq.bits  # the lowest level at each coding scale trained
        keep = torch.full((batch.shape[0],), low, device=batch.device) if levels else None
        for s in self.cfg.scales:
            if s != 1:
                out[f"psnr_ema_{low}_x{s:g}"] = psnr(self._scaled_forward(self.ema, batch, s, keep=keep)[1], batch)
        self.model.train()
        return out

    def init_from(self, path: Path) -> None:
        """Start from another run's or model's weights (EMA weights of a checkpoint)."""
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = {k: v.float() for k, v in load_file(str(path)).items()}
        else:
            state = torch.load(path, map_location="cpu", weights_only=False)["ema"]
        grown = grow_state(self.model.state_dict(), state)
        self.model.load_state_dict(grown)
        self.ema.load_state_dict(grown)


def grow_state(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`new` (a fresh model's state) with `old`'s weights copied in where they fit.

    A tensor that grew (more latent channels: the rate ladder's extra bits)
    gets the old values in its leading slice. Where an input-channel axis
    (dim 1) grew, the new part is zeroed, so that the grown model computes
    what the old one did until training moves it; new output channels (dim
    0) keep their fresh initialisation so that they carry a signal.

    A model re-cut to another architecture starts from the old weights too:
    - a tensor that shrank keeps the old one's leading slice (fewer bits: the
      ladder orders latent channels by importance);
    - a decoder upsampling projection that lost a 2x2 spatial depth-to-space
      (a finer latent grid) gives the mean of the old one's four sub-pixel
      outputs, and one that gained it gives the old output in all four
      (nearest-neighbour upsampling);
    - a patch size halved (4 -> 2: the first level at twice the resolution)
      turns the stem's 4x4 kernel into a 2x2 one that sums its 2x2 blocks and
      the decoder's 4x4 output patch into a 2x2 one that averages them, so the
      new first and last levels start as the old ones on a 2x-upscaled frame.
    """
    out = {}
    for key, fresh in new.items():
        src = old.get(key)
        if src is not None and src.dim() == fresh.dim():
            src = _recut(key, src, fresh.shape)
        if src is None or src.dim() != fresh.dim():
            out[key] = fresh
            continue
        src = src[tuple(slice(0, n) for n in fresh.shape)]
        t = fresh.clone()
        if fresh.dim() >= 2 and src.shape[1] < fresh.shape[1]:
            t[:, src.shape[1]:] = 0
        t[tuple(slice(0, n) for n in src.shape)] = src.to(t.dtype)
        out[key] = t
    return out


def _recut(key: str, src: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`src` mapped onto a re-cut layer's `shape` (see grow_state); unchanged if no rule applies."""
    if key.startswith("decoder.ups.") and src.shape[0] == 4 * shape[0]:
        return src.reshape(shape[0], 2, 2, *src.shape[1:]).mean(dim=(1, 2))
    if key.startswith("decoder.ups.") and 4 * src.shape[0] == shape[0]:
        return src.repeat_interleave(4, dim=0)
    if key == "encoder.stem.weight" and src.shape[-1] == 2 * shape[-1]:
        p = shape[-1]
        return src.reshape(*src.shape[:3], p, 2, p, 2).sum(dim=(4, 6))
    if key.startswith("decoder.conv_out.") and src.shape[0] == 4 * shape[0] and shape[0] % 3 == 0:
        p = math.isqrt(shape[0] // 3)  # channels are (rgb, row, column) of the output patch
        return src.reshape(3, p, 2, p, 2, *src.shape[1:]).mean(dim=(2, 4)).reshape(shape[0], *src.shape[1:])
    return src


# ---------------------------------------------------------------- logging


def plot_log(log: Path, out: Path) -> None:
    """Loss and PSNR curves from log.jsonl (skipped when matplotlib is absent)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in rows]
    # The total loss goes negative (the entropy bonus), so plot its positive parts.
    for key in ("l1", "l2"):
        axes[0].plot(steps, [r.get(key, np.nan) for r in rows], label=key)
    axes[0].plot(steps, [1 - r.get("ssim", np.nan) for r in rows], label="1 - ssim")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].set_title("training losses")
    ev = [r for r in rows if "psnr_ema" in r]
    axes[1].plot([r["step"] for r in ev], [r["psnr_ema"] for r in ev], label="EMA")
    axes[1].plot([r["step"] for r in ev], [r["psnr"] for r in ev], label="raw")
    axes[1].set_title("PSNR on a fixed batch (dB)")
    axes[1].legend()
    for key in ("codebook_entropy", "per_sample_entropy", "quant_mix"):
        axes[2].plot(steps, [r.get(key, np.nan) for r in rows], label=key)
    axes[2].legend()
    axes[2].set_title("quantiser")
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- main


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return rank, world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return rank, world, torch.device("cpu")


def train(cfg: TrainConfig, run: Path, stop_after: float | None = None, sampler: ClipSampler | None = None) -> Trainer:
    """Run (or resume) training in `run` until cfg.steps or `stop_after` seconds.

    `sampler` saves decoding cfg.data again when the caller already holds one.
    """
    rank, world, device = _setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run.mkdir(parents=True, exist_ok=True)
    saved = run / "config.json"
    if saved.is_file():
        old = TrainConfig.from_dict(json.loads(saved.read_text()))
        if replace(old, steps=cfg.steps) != replace(cfg, steps=cfg.steps):
            raise ValueError(f"{run} holds a run with another configuration (delete it or use another --run)")
    elif rank == 0:
        saved.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    trainer = Trainer(cfg, run, device, rank, world)
    if trainer.ckpt_path.is_file():
        trainer.load()
        if rank == 0:
            print(f"resumed {run} at step {trainer.step}")
    elif cfg.init_from:
        trainer.init_from(Path(cfg.init_from))
        if rank == 0:
            print(f"initialised from {cfg.init_from}")
    sampler = sampler or ClipSampler(cfg.data, log=rank == 0)
    if rank == 0:
        print(f"{sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M parameters, "
              f"{sampler.frames} training frames, device {device}, world {world}")
    eval_batch = sampler.sample(min(cfg.batch, 8), np.random.default_rng(12345), frames=cfg.data.clip_frames,
                                device=device)
    log = (run / "log.jsonl").open("a") if rank == 0 else None
    began, start_step = time.monotonic(), trainer.step
    while trainer.step < cfg.steps:
        parts = trainer.train_step(sampler.sample(cfg.batch, trainer.rng, device=device))
        step = trainer.step
        if rank == 0 and (step % cfg.eval_every == 0 or step == cfg.steps):
            parts.update(trainer.evaluate(eval_batch))
        if rank == 0 and (step % cfg.log_every == 0 or "psnr" in parts):
            elapsed = time.monotonic() - began
            rate = (step - start_step) / elapsed
            parts.update(step=step, seconds=round(elapsed, 1))
            log.write(json.dumps(parts) + "\n")
            log.flush()
            eta = (cfg.steps - step) / rate if rate else float("inf")
            extra = f" psnr(ema) {parts['psnr_ema']:.2f} dB" if "psnr_ema" in parts else ""
            print(f"step {step}/{cfg.steps} loss {parts['loss']:.4f} l1 {parts['l1']:.4f} mix {parts['quant_mix']:.2f}"
                  f"{extra} | {rate:.2f} steps/s, ETA {eta / 60:.0f} min", flush=True)
        done = step == cfg.steps or (stop_after is not None and time.monotonic() - began > stop_after)
        if world > 1:  # rank 0's clock decides for all: a rank that stopped alone would hang the others
            flag = torch.tensor([float(done)], device=device)
            dist.broadcast(flag, 0)
            done = bool(flag.item())
        if rank == 0 and (step % cfg.ckpt_every == 0 or done):
            trainer.save()
            plot_log(run / "log.jsonl", run / "loss.png")
        if done:
            break
    if log:
        log.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return trainer


def export(run: Path, out_dir: Path, name: str | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Save a run's EMA weights as a shipped model (NAME.json + NAME.safetensors, float16)."""
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model_cfg = replace(cfg.model, name=name or cfg.model.name)
    model = Tokenizer(model_cfg)
    model.load_state_dict(state["ema"])
    return save_tokenizer(model, out_dir, dtype)


def build_config(args: argparse.Namespace) -> TrainConfig:
    model = PRESETS[args.preset]
    if args.channels:
        model = replace(model, channels=tuple(int(c) for c in args.channels.split(",")))
    if args.bits or args.levels:  # together: a ladder must end at the bits
        bits = args.bits or model.lfq.bits
        levels = tuple(int(b) for b in args.levels.split(",")) if args.levels else ()
        default = model.lfq.default_level if -len(levels) <= model.lfq.default_level < len(levels) else -1
        model = replace(model, lfq=replace(model.lfq, bits=bits, levels=levels, default_level=default))
    if args.blocks:
        model = replace(model, blocks_per_level=args.blocks)
    if args.patch:
        model = replace(model, patch_size=args.patch)
    if args.spatial_downsample:
        model = replace(model, spatial_downsample=args.spatial_downsample)
    if args.default_level is not None:
        model = replace(model, lfq=replace(model.lfq, default_level=args.default_level))
    if args.name:
        model = replace(model, name=args.name)
    data = DataConfig(paths=tuple(args.data), clip_frames=args.clip_frames, crop=args.crop, max_side=args.max_side,
                      graphics=args.graphics)
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if f.name not in ("model", "data", "betas") and getattr(args, f.name, None) is not None}
    if args.init_from:
        overrides["init_from"] = str(Path(args.init_from).resolve())
    return TrainConfig(model=model, data=data, **overrides)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tokcodec train", description="Train the tokenizer on a folder of videos.")
    ap.add_argument("data", nargs="*", help="video/image files or folders")
    # --run-dir: under torchrun, whose own parser takes "--run" for an abbreviation of its --run-path
    ap.add_argument("--run", "--run-dir", dest="run", required=True, type=Path,
                    help="run folder (checkpoints, log); resumes if present (--run-dir under torchrun)")
    ap.add_argument("--preset", default="magvit2-4x8x8-k30", choices=sorted(PRESETS))
    ap.add_argument("--channels", help="override channel widths, e.g. 64,128,256")
    ap.add_argument("--blocks", type=int, help="override residual blocks per level")
    ap.add_argument("--patch", type=int, help="override the patch-embedding size (spatial stride of the stem)")
    ap.add_argument("--bits", type=int, help="override LFQ codebook bits")
    ap.add_argument("--levels", help="rate ladder: bits kept per quality level, e.g. 6,12,18,24,30")
    ap.add_argument("--default-level", type=int, help="the quality level encode uses by default (index into --levels)")
    ap.add_argument("--spatial-downsample", type=int, help="override the total spatial factor, e.g. 4 for a 4x4x4 grid")
    ap.add_argument("--init-from", help="start a new run from this checkpoint.pt (EMA) or .safetensors")
    ap.add_argument("--clip-frames", type=int, default=9)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--graphics", type=float, default=0.0,
                    help="share of training clips drawn from procedural graphics (bars, text, shapes), e.g. 0.2")
    ap.add_argument("--stop-after", type=float, help="stop (with a checkpoint) after this many seconds")
    ap.add_argument("--export", type=Path, help="only export the run's EMA weights into this folder")
    ap.add_argument("--name", help="model name for --export")
    for f in fields(TrainConfig):
        if f.type in ("int", "float") and f.name not in ("steps",):
            ap.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--freeze-decoder", action="store_true", default=None,
                    help="train the encoder only: the decoder, and so existing .tok files, stay valid")
    ap.add_argument("--freeze-encoder", action="store_true", default=None,
                    help="train the decoder only: tokens, and so the fitted entropy priors, stay the same")
    ap.add_argument("--scales", type=_floats, help="coding scales to train at, e.g. 0.5,1,2 (`encode --scale`)")
    ap.add_argument("--level-weights", type=_floats, help="relative frequency of each --levels level, e.g. 4,1,1,1,1")
    ap.add_argument("--hysteresis", type=_floats,
                    help="the encoder's sign hysteresis in training steps; several: each step draws one, e.g. 0.2,0.8")
    ap.add_argument("--amp", choices=["bf16"], help="bfloat16 autocast for the networks (GPUs with bf16 units)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not args.export and not args.data:
        ap.error("give the training videos (files or folders)")
    if args.export:
        print(export(args.run, args.export, args.name))
        return 0
    train(build_config(args), args.run, args.stop_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
