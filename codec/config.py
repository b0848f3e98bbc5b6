"""Tokenizer configuration as dataclasses.

A config fully determines the architecture, so a shipped model is a config
(JSON) plus a safetensors file of weights, and two configs that compare equal
build interchangeable models.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LFQConfig:
    """Lookup-free quantisation (MAGVIT-v2, section 3.1).

    bits: codebook size is 2**bits; one latent channel per bit.
    commit_weight: weight of the commitment loss ||z - sg(q(z))||^2.
    entropy_weight: weight of the entropy penalty E[H(q(z))] - gamma * H[E(q(z))].
    codebook_entropy_gamma: gamma above (MAGVIT-v2 uses 1).
    entropy_temperature: temperature of the soft code assignment.
    entropy_group_bits: the entropy terms are computed exactly over all 2**bits
        codes when bits <= entropy_group_bits; otherwise the bits are split into
        sub-groups of at most this many bits whose entropies are summed
        (independence approximation), which keeps 2**18 codebooks affordable.
    levels: the rate ladder, as the number of leading channels (bits) each
        quality level keeps, ascending, the last equal to `bits`; empty means
        one level of all bits. Training drops the trailing channels to a
        random level's count per sample (nested dropout), so the first
        channels learn to carry the most; a decoder given only the first b
        bits of a token sets the missing channels to 0.
    default_level: the quality level `tokcodec encode` uses when none is
        asked for, as an index into `level_bits` (-1: the top level).
    """

    bits: int = 18
    commit_weight: float = 0.25
    entropy_weight: float = 0.1
    codebook_entropy_gamma: float = 1.0
    entropy_temperature: float = 0.01
    entropy_group_bits: int = 9
    levels: tuple[int, ...] = ()
    default_level: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        if not 1 <= self.bits <= 30:
            raise ValueError(f"LFQ bits must be in 1..30, got {self.bits}")
        if self.entropy_group_bits < 1:
            raise ValueError("entropy_group_bits must be >= 1")
        lv = self.levels
        if lv and (list(lv) != sorted(set(lv)) or lv[0] < 1 or lv[-1] != self.bits):
            raise ValueError(f"LFQ levels must ascend from >= 1 to bits={self.bits}, got {lv}")
        if not -len(self.level_bits) <= self.default_level < len(self.level_bits):
            raise ValueError(f"default_level {self.default_level} is not a level of {self.level_bits}")

    @property
    def default_quality(self) -> int:
        """The default quality level, 0 .. len(level_bits) - 1."""
        return self.default_level % len(self.level_bits)

    @property
    def level_bits(self) -> tuple[int, ...]:
        """Bits kept at each quality level (the ladder), lowest first."""
        return self.levels or (self.bits,)


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of the causal 3D CNN tokenizer.

    The encoder is: patch embedding (a (1, p, p) strided convolution), then one
    level per entry of `channels`, each with `blocks_per_level` residual
    blocks; between two levels a strided causal convolution downsamples.
    Spatial downsampling happens at the first transitions and temporal
    downsampling at the last ones (MAGVIT-v2 defers it to the end of the
    encoder). The decoder mirrors it with depth-to-space upsampling and an
    adaptive group norm conditioned on the quantised latent at every level.

    temporal_downsample: 1, 2, 4, ... ; a clip of 1 + t*k frames gives 1 + k
        latent frames, the first frame being encoded on its own.
    spatial_downsample: total spatial factor, patch_size * 2**(number of
        spatial transitions).
    factorized: replace each 3x3x3 convolution in residual blocks by a
        (1,3,3) spatial and a (3,1,1) temporal one (cheaper on CPU).
    """

    name: str = "magvit2-4x8x8-k18"
    channels: tuple[int, ...] = (64, 128, 256)
    blocks_per_level: int = 2
    patch_size: int = 4
    temporal_downsample: int = 4
    spatial_downsample: int = 8
    factorized: bool = True
    norm_groups: int = 16
    lfq: LFQConfig = field(default_factory=LFQConfig)

    def __post_init__(self) -> None:
        # JSON gives lists; keep the config hashable and comparable.
        object.__setattr__(self, "channels", tuple(self.channels))
        if isinstance(self.lfq, dict):
            object.__setattr__(self, "lfq", LFQConfig(**self.lfq))
        transitions = len(self.channels) - 1
        if self.spatial_downsample % self.patch_size:
            raise ValueError("spatial_downsample must be a multiple of patch_size")
        if self.spatial_transitions > transitions or self.temporal_transitions > transitions:
            raise ValueError(
                f"{self.spatial_downsample}x spatial / {self.temporal_downsample}x temporal "
                f"downsampling needs more than the {transitions} level transitions of {self.channels}"
            )
        for c in self.channels:
            if c % self.norm_groups:
                raise ValueError(f"channel width {c} is not divisible by norm_groups={self.norm_groups}")

    @property
    def spatial_transitions(self) -> int:
        return _log2_exact(self.spatial_downsample // self.patch_size, "spatial_downsample / patch_size")

    @property
    def temporal_transitions(self) -> int:
        return _log2_exact(self.temporal_downsample, "temporal_downsample")

    @property
    def bits(self) -> int:
        return self.lfq.bits

    def transition_strides(self) -> list[tuple[int, int]]:
        """(temporal, spatial) stride of each level transition, encoder order."""
        n = len(self.channels) - 1
        return [
            (2 if i >= n - self.temporal_transitions else 1, 2 if i < self.spatial_transitions else 1)
            for i in range(n)
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["lfq"]["levels"] = list(self.lfq.levels)
        if not self.lfq.levels:
            del d["lfq"]["levels"]  # single-level configs keep their old JSON
        if self.lfq.default_level == -1:
            del d["lfq"]["default_level"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenizerConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown tokenizer config keys: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TokenizerConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _log2_exact(n: int, what: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two, got {n}")
    return n.bit_length() - 1


# Named presets for the compression factors the design asks for.
PRESETS: dict[str, TokenizerConfig] = {
    # The default: 30 latent channels, a rate ladder of 6 to 30 bits per token.
    "magvit2-4x8x8-k30": TokenizerConfig(
        name="magvit2-4x8x8-k30", lfq=LFQConfig(bits=30, levels=(6, 12, 18, 24, 30), default_level=2)
    ),
    "magvit2-4x8x8-k18": TokenizerConfig(),
    "magvit2-1x8x8-k18": TokenizerConfig(name="magvit2-1x8x8-k18", temporal_downsample=1),
    "magvit2-4x16x16-k18": TokenizerConfig(
        name="magvit2-4x16x16-k18", channels=(64, 128, 256), spatial_downsample=16
    ),
}
