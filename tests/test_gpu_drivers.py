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


def load_driver():
    sys.path.insert(0, str(GPU))  # the driver imports checkout.py beside it
    spec = importlib.util.spec_from_file_location("gpu_train", GPU / "train.py")
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
