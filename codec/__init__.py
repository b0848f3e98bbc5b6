"""The tokenizer model, its configs and shipped weights, and video file I/O."""

from .config import LFQConfig, TokenizerConfig
from .lfq import LFQ, bits_to_indices, indices_to_bits, merge_tokens, split_tokens
from .model import Tokenizer
from .registry import DEFAULT_MODEL, ModelInfo, available_models, fingerprint, load_tokenizer, save_tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "LFQ",
    "LFQConfig",
    "ModelInfo",
    "Tokenizer",
    "TokenizerConfig",
    "available_models",
    "bits_to_indices",
    "fingerprint",
    "indices_to_bits",
    "load_tokenizer",
    "merge_tokens",
    "save_tokenizer",
    "split_tokens",
]
