"""Shipped tokenizers: loading by name, offline, and weight fingerprints.

A shipped model is `models/NAME.json` (a TokenizerConfig) and, once trained,
`models/NAME.safetensors` beside it inside the package. A model whose weights
have not been trained yet is built from its config with a fixed seed, so that
it is the same model on every machine with the same torch version; the
`trained` flag of `ModelInfo` says which is which.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import TokenizerConfig
from .model import Tokenizer

MODELS_DIR = Path(__file__).with_name("models")
DEFAULT_MODEL = "magvit2-4x8x8-k30"
INIT_SEED = 0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    config: TokenizerConfig
    trained: bool  # False: fixed-seed initialisation, no trained weights shipped yet


def available_models() -> list[ModelInfo]:
    """All tokenizers shipped inside the package."""
    return [_info(name) for name in _shipped_names()]


def _shipped_names() -> list[str]:
    # NAME.json is a model's config; NAME.ladder.json and other dotted names are data beside it.
    return [p.stem for p in sorted(MODELS_DIR.glob("*.json")) if "." not in p.stem]


def _info(name: str) -> ModelInfo:
    path = MODELS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(_shipped_names())
        raise ValueError(f"unknown model {name!r} (shipped models: {known})")
    return ModelInfo(name, TokenizerConfig.load(path), (MODELS_DIR / f"{name}.safetensors").is_file())


def load_tokenizer(name: str | None = None, device: str | torch.device = "cpu") -> Tokenizer:
    """The shipped tokenizer `name` (the default one when None), in eval mode.

    Loads offline from the package. Until trained weights ship for a model,
    it is initialised with a fixed seed (see `ModelInfo.trained`).
    """
    info = _info(name or DEFAULT_MODEL)
    weights = MODELS_DIR / f"{info.name}.safetensors"
    if info.trained:
        model = Tokenizer(info.config)
        # Weights may ship in float16 to fit the repository; compute in float32.
        model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            model = Tokenizer(info.config)
    return model.to(device).eval()


def save_tokenizer(model: Tokenizer, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write `NAME.json` and `NAME.safetensors` for `model` into `directory`.

    `dtype=torch.float16` halves the file (shipped weights must stay small);
    the fingerprint is that of the weights as loaded back.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / f"{model.config.name}.json")
    path = directory / f"{model.config.name}.safetensors"
    state = {k: v.detach().cpu().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return path


def fingerprint(model: torch.nn.Module) -> str:
    """A 16-hex-digit digest of the weights, independent of device and dict order.

    The .tok header stores it so that a decoder with other weights refuses a
    file instead of producing garbage.
    """
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]
