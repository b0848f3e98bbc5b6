"""Fine-tune a shipped tokenizer on a lent GPU machine, inside a fixed time budget.

The lent machines (see the developers' guide) have PyTorch with CUDA but no
PyAV and no package index, and a session gets one short call. So this driver

1. imports tokcodec straight from the checkout (`checkout.py`), decoding
   the training videos with OpenCV when PyAV is missing;
2. times a few training steps first and sets the run's length (and so its
   cosine schedule and EMA horizon) to what fits the remaining budget;
3. trains with `codec.train.train`, the same code as `tokcodec train`;
4. writes the EMA and the raw (last step's) weights as float16 safetensors
   in parts small enough to come back from the machine, plus the run's
   config, log and plot. Which ships is measured afterwards: on the test
   card a fine-tune's raw weights beat its EMA by up to 1.1 dB at some
   steps and lost by 0.1 dB at others (bench/RESULTS.md).

    python bench/gpu/train.py --data DIR [DIR...] --init-from codec/models/NAME.safetensors \\
        --out OUT --budget 480

The training videos travel with the call: pack them into `.gpu_data/` (git
ignores it) with `pack_data.py` beside this file (the frames training reads,
downscaled, as MP4s OpenCV decodes: the corpus's training videos and
`bench/train_data` come to 36 MB) and name it in the device tool's
`carry`. A folder named several times is drawn from as many times as often,
as with `tokcodec train`: pack the corpus and the extra files into two
folders and name the corpus's three times to give it half the clips, as the
shipped decoder's last CPU fine-tune did.

Join the parts afterwards with `--join OUT NAME [--weights raw]` (here, with tokcodec installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from checkout import ROOT, import_checkout
from runtime import Device

DISC_OFF = 10**9  # TrainConfig.disc_start's "never"
PART_BYTES = 12 << 20  # the device tool brings back files of at most 16 MiB


def _opencv_frames(path):  # noqa: ANN001, ANN202 - same contract as codec.io.iter_frames
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        from tokcodec.codec.io import VideoError

        raise VideoError(f"{path}: OpenCV cannot open it")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def save_parts(state: dict, out: Path, stem: str) -> list[Path]:
    """float16 copies of `state` in safetensors files of at most ~PART_BYTES each."""
    from safetensors.torch import save_file

    parts, current, size = [], {}, 0
    for key, t in state.items():
        t = t.detach().to("cpu", copy=True)
        if t.is_floating_point():
            t = t.half()
        if current and size + t.numel() * t.element_size() > PART_BYTES:
            parts.append(current)
            current, size = {}, 0
        current[key] = t.contiguous()
        size += t.numel() * t.element_size()
    parts.append(current)
    paths = []
    for i, part in enumerate(parts):
        paths.append(out / f"{stem}.part{i}.safetensors")
        save_file(part, str(paths[-1]))
    return paths


def join_parts(folder: Path, name: str, out_dir: Path, stem: str = "ema") -> Path:
    """Ship the weights that `save_parts` wrote under `stem` ("ema" or "raw") as model NAME in out_dir."""
    import torch
    from safetensors.torch import load_file

    from tokcodec.codec.model import Tokenizer
    from tokcodec.codec.registry import save_tokenizer
    from tokcodec.codec.train import TrainConfig

    cfg = TrainConfig.from_dict(json.loads((folder / "config.json").read_text()))
    state = {}
    parts = sorted(folder.glob(f"{stem}.part*.safetensors"))
    if not parts:
        raise SystemExit(f"{folder}: no {stem}.part*.safetensors")
    for part in parts:
        state.update(load_file(str(part)))
    model = Tokenizer(replace(cfg.model, name=name))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return save_tokenizer(model, out_dir, torch.float16)  # as `codec.train.export` ships weights


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", help="folders (or files) of training videos; one named twice is drawn twice as often")
    ap.add_argument("--init-from", help="shipped .safetensors (or checkpoint.pt) to start from")
    ap.add_argument("--out", type=Path, help="folder for the weights' parts, config, log and plot")
    ap.add_argument("--budget", type=float, default=480, help="seconds for everything from start to saved weights")
    ap.add_argument("--preset", default="magvit2-4x8x8-k30")
    ap.add_argument("--patch", type=int, help="re-cut the preset: patch size (2: the first level at half resolution)")
    ap.add_argument("--spatial-downsample", type=int, help="re-cut the preset: total spatial factor (4: a 4x4 grid)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--clip-frames", type=int, default=17)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--luma-weight", type=float, default=0.0,
                    help="TrainConfig.luma_weight: share of the reconstruction loss on BT.601 luma")
    ap.add_argument("--lowpass", type=float, default=0.0,
                    help="TrainConfig.lowpass: weight of the L1 on 8x8-block means")
    ap.add_argument("--graphics", type=float, default=0.0, help="DataConfig.graphics: share of procedural graphics clips")
    ap.add_argument("--disc-start", type=int, default=DISC_OFF, help="step the 3D discriminator starts at (default: off)")
    ap.add_argument("--disc-weight", type=float, default=0.1)
    ap.add_argument("--amp", choices=["bf16"], help="bfloat16 autocast (see TrainConfig.amp)")
    ap.add_argument("--freeze-decoder", action="store_true",
                    help="train the encoder only (TrainConfig.freeze_decoder: existing .tok files stay valid)")
    ap.add_argument("--rate", type=float, default=0.0, help="TrainConfig.rate: weight of bit changes per pixel")
    ap.add_argument("--freeze-encoder", action="store_true",
                    help="train the decoder only (TrainConfig.freeze_encoder: tokens and priors stay valid)")
    ap.add_argument("--scales", type=_floats, help="TrainConfig.scales: coding scales to train at, e.g. 0.5,1,2,3")
    ap.add_argument("--level-weights", type=_floats, help="TrainConfig.level_weights, e.g. 6,1,1,1,1")
    ap.add_argument("--hysteresis", type=_floats, default=(),
                    help="TrainConfig.hysteresis: train on the tokens `encode` writes (e.g. 0.2,0.4,0.6,0.8 with "
                         "--freeze-encoder; several: each step draws one)")
    ap.add_argument("--probe-steps", type=int, default=14, help="timed steps, spread evenly over the scales")
    ap.add_argument("--opencv", action="store_true", help="decode with OpenCV even where PyAV is installed")
    ap.add_argument("--join", nargs=2, metavar=("FOLDER", "NAME"), help="join parts into a shipped model")
    ap.add_argument("--weights", choices=("ema", "raw"), default="ema", help="which weights --join ships")
    args = ap.parse_args()
    use_opencv = not args.join and (args.opencv or importlib.util.find_spec("av") is None)
    import_checkout(stub_av=use_opencv)
    if not args.join and not (args.data and args.out):
        ap.error("--data and --out are needed to train")
    if args.join:
        print(join_parts(Path(args.join[0]), args.join[1], ROOT / "codec" / "models", args.weights))
        return

    began = time.monotonic()
    import numpy as np
    import torch

    from tokcodec.codec import data as data_mod
    from tokcodec.codec.config import PRESETS
    from tokcodec.codec.data import ClipSampler, DataConfig
    from tokcodec.codec.train import Trainer, TrainConfig, train

    if use_opencv:
        data_mod.iter_frames = _opencv_frames
    device = Device.setup().device

    data = DataConfig(paths=tuple(args.data), clip_frames=args.clip_frames, crop=args.crop, graphics=args.graphics)
    model = PRESETS[args.preset]
    if args.patch:
        model = replace(model, patch_size=args.patch)
    if args.spatial_downsample:
        model = replace(model, spatial_downsample=args.spatial_downsample)
    cfg = TrainConfig(model=model, data=data, batch=args.batch, lr=args.lr, lr_warmup=100,
                      quant_start=0, quant_ramp=1, eval_every=100, ckpt_every=10**9,
                      disc_start=args.disc_start, disc_weight=args.disc_weight, amp=args.amp or "",
                      freeze_decoder=args.freeze_decoder, rate=args.rate, freeze_encoder=args.freeze_encoder,
                      luma_weight=args.luma_weight, lowpass=args.lowpass, scales=args.scales or (),
                      level_weights=args.level_weights or (),
                      hysteresis=args.hysteresis,
                      init_from=str(Path(args.init_from).resolve()) if args.init_from else "")
    sampler = ClipSampler(data)
    print(f"decoded {sampler.frames} frames in {time.monotonic() - began:.0f} s", flush=True)

    # Probe: the steady rate of this batch shape on this device, data included.
    # With a discriminator in the run, time steps that train it too (the slower kind).
    # Warm steps at each coding scale first, the largest first: they show whether the
    # batch fits the GPU's memory (halved until it does) and keep cuDNN's first-shape
    # autotuning out of the timed steps.
    gan = cfg.disc_start < DISC_OFF
    rng = np.random.default_rng(0)
    while True:
        probe = Trainer(replace(cfg, steps=10**6, disc_start=0 if gan else cfg.disc_start), args.out / "probe", device)
        try:
            for s in sorted(cfg.scales or (1.0,), reverse=True):
                probe.cfg = replace(probe.cfg, scales=(s,))
                for frames in (cfg.data.clip_frames, 1):  # clips, and the 1-frame (image) batches
                    probe.train_step(sampler.sample(cfg.batch, rng, frames=frames, device=device))
            break
        except torch.cuda.OutOfMemoryError:
            if cfg.batch == 1:
                raise
            del probe
            torch.cuda.empty_cache()
            cfg = replace(cfg, batch=cfg.batch // 2)
            print(f"out of GPU memory: batch {cfg.batch} instead", flush=True)
    # A step's cost grows with its scale's area (0.5x to 3x: 36-fold), so a few steps at
    # randomly drawn scales measure the draw more than the rate: the H200 call that drew
    # 3.03 steps/s ran at 3.71 and ended 113 s early. Time each scale alike instead; the
    # run draws them uniformly, so its mean step time is the mean over scales.
    scales = cfg.scales or (1.0,)
    per_scale = max(1, args.probe_steps // len(scales))
    seconds = []
    for s in scales:
        probe.cfg = replace(probe.cfg, scales=(s,))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.monotonic()
        for _ in range(per_scale):
            probe.train_step(sampler.sample(cfg.batch, rng, frames=cfg.data.clip_frames, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append((time.monotonic() - t0) / per_scale)
    rate = 1 / (sum(seconds) / len(seconds))
    print("probe: " + ", ".join(f"{s:g}x {1 / t:.2f}" for s, t in zip(scales, seconds)) + " steps/s", flush=True)
    del probe
    if device.type == "cuda":
        torch.cuda.empty_cache()
        print(f"batch {cfg.batch}: peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
    left = args.budget - (time.monotonic() - began) - 15  # 15 s for saving
    steps = max(50, int(rate * left * 0.93))  # evaluations and 1-frame batches cost a little
    # The EMA must forget the starting weights within the run: ~6 horizons.
    cfg = replace(cfg, steps=steps, ema_decay=min(0.999, max(0.99, 1 - 6 / steps)))
    print(f"{rate:.2f} steps/s: training {steps} steps in {left:.0f} s (EMA decay {cfg.ema_decay:.4f})", flush=True)

    run = args.out / "run"
    trainer = train(cfg, run, stop_after=left, sampler=sampler)
    save_parts(trainer.ema.state_dict(), args.out, "ema")
    save_parts(trainer.model.state_dict(), args.out, "raw")
    for name in ("config.json", "log.jsonl", "loss.png"):
        if (run / name).is_file():
            shutil.copy(run / name, args.out / name)
    shutil.rmtree(run)
    shutil.rmtree(args.out / "probe", ignore_errors=True)
    print(f"done at step {trainer.step} in {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
