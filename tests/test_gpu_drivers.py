"""bench/gpu: the drivers the lent GPU machines run (their CPU-testable parts)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tokcodec.codec import LFQConfig, Tokenizer, TokenizerConfig
from tokcodec.codec.train import TrainConfig

GPU = Path(__file__).resolve().parent.parent / "bench" / "gpu"


def load_driver(name: str = "train"):
    sys.path.insert(0, str(GPU))  # the training driver imports checkout.py beside it
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weights_come_back_in_parts_and_ship_as_one_model(tmp_path: Path, monkeypatch) -> None:
    driver = load_driver()
    monkeypatch.setattr(driver, "PART_BYTES", 20_000)  # the real limit is 12 MiB; force several parts
    model_cfg = TokenizerConfig(name="tiny", channels=(16, 16, 32), blocks_per_level=1, norm_groups=8,
                                lfq=LFQConfig(bits=10))
    (tmp_path / "config.json").write_text(json.dumps(asdict(TrainConfig(model=model_cfg))))
    torch.manual_seed(0)
    state = Tokenizer(model_cfg).state_dict()
    parts = driver.save_parts(state, tmp_path, "ema")
    assert len(parts) > 1
    for part in parts:  # a part is over the limit only when one tensor alone is
        tensors = load_file(str(part))
        assert len(tensors) == 1 or sum(t.numel() * t.element_size() for t in tensors.values()) <= 20_000
    shipped = driver.join_parts(tmp_path, "tiny-gpu", tmp_path / "models")
    assert shipped.name == "tiny-gpu.safetensors" and (tmp_path / "models" / "tiny-gpu.json").is_file()
    weights = load_file(str(shipped))
    assert weights.keys() == state.keys()
    for key, value in state.items():
        expected = value.half() if value.is_floating_point() else value
        assert torch.equal(weights[key], expected), key
    # the raw weights come back beside the EMA, and --weights raw ships them instead
    with pytest.raises(SystemExit, match="no raw.part"):
        driver.join_parts(tmp_path, "tiny-raw", tmp_path / "models", "raw")
    raw = Tokenizer(model_cfg).state_dict()  # another draw of the weights
    driver.save_parts(raw, tmp_path, "raw")
    weights = load_file(str(driver.join_parts(tmp_path, "tiny-raw", tmp_path / "models", "raw")))
    assert torch.equal(weights["encoder.stem.weight"], raw["encoder.stem.weight"].half())
    assert not torch.equal(weights["encoder.stem.weight"], state["encoder.stem.weight"].half())


def test_refine_speed_runs_on_the_cpu(tmp_path: Path) -> None:
    """bench/gpu/refine_speed.py falls back to the CPU, so a GPU call does not meet it for the first time."""
    import subprocess

    out = tmp_path / "refine.json"
    subprocess.run([sys.executable, str(GPU / "refine_speed.py"), "--sizes", "64x48", "--steps", "0,1",
                    "--frames", "5", "--json", str(out)], check=True, capture_output=True, timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert [r["steps"] for r in rows] == [0, 1] and all(r["encode_fps"] > 0 for r in rows)


def test_pack_data_writes_the_frames_training_reads(tmp_path: Path) -> None:
    """bench/gpu/pack_data.py: each video and image becomes an MP4 of its training frames, downscaled."""
    import numpy as np
    from PIL import Image

    from tokcodec.codec.data import DataConfig, training_frames
    from tokcodec.codec.io import iter_frames

    pack_data = load_driver("pack_data")
    sample = Path(__file__).resolve().parent.parent / "codec" / "samples" / "sample.mp4"  # 256x192, 33 frames
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 121, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    config = DataConfig(max_side=100, max_frames_per_video=20)
    assert pack_data.pack([str(sample), str(tmp_path / "photo.png")], tmp_path / "out", config) == 21
    video = np.stack(list(iter_frames(tmp_path / "out" / "sample.mp4.mp4")))
    assert video.shape == (20, 74, 100, 3)  # 75 rows downscaled, the odd one dropped for 4:2:0
    expected = training_frames(sample, config)[:, :74].astype(float)
    luma = np.array([0.299, 0.587, 0.114])
    mse = np.mean((video.astype(float) @ luma - expected @ luma) ** 2)
    assert 10 * np.log10(255**2 / mse) > 38  # 42.6 dB measured; another frame would be far below
    photo = np.stack(list(iter_frames(tmp_path / "out" / "photo.png.mp4")))
    assert photo.shape == (1, 74, 100, 3)  # 90x121 -> 74x100
