"""The torch device the GPU drivers measure on, set up alike for each of them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Device:
    """CUDA with TF32 and cuDNN autotuning on, or the CPU where there is no GPU
    (only to try a driver out)."""

    device: Any  # torch.device
    label: str

    @classmethod
    def setup(cls) -> Device:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        cuda = torch.cuda.is_available()
        out = cls(torch.device("cuda" if cuda else "cpu"), torch.cuda.get_device_name() if cuda else "cpu")
        print(f"torch {torch.__version__} on {out.label} (TF32 on)", flush=True)
        return out

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        """Wait for queued GPU work (timing)."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def take_peak_gib(self) -> float | None:
        """Peak GPU memory since the last call, in GiB (None on the CPU)."""
        if not self.cuda:
            return None
        import torch

        peak = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        torch.cuda.reset_peak_memory_stats()
        return peak

    def save_rows(self, path: Path | None, rows: list[dict]) -> None:
        """The measured rows as JSON with the device, torch version and date."""
        if path is None:
            return
        import torch

        path.write_text(json.dumps({"device": self.label, "torch": torch.__version__,
                                    "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2) + "\n")
