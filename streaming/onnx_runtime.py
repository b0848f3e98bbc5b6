"""onnxruntime sessions for the exported streaming steps (see onnx_export.py).

`OnnxEngine(dir)` opens the four graphs with the best execution provider
available, TensorRT, then CUDA, then CPU, unless `providers` (or the
environment variable TOKCODEC_ORT_PROVIDERS, comma-separated) says
otherwise. It has the interface of `stateful.TorchEngine`, so
`StreamingEncoder` / `StreamingDecoder` run on either. On a GPU provider the
caches stay on the device between steps (I/O binding); only frames and
latents cross to the host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .onnx_export import FORMAT, GRAPHS

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str] | None = None) -> list[str]:
    """The execution providers to use, best first; raises ValueError for an unavailable one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    env = os.environ.get("TOKCODEC_ORT_PROVIDERS")
    if requested is None and env:
        requested = [p.strip() for p in env.split(",") if p.strip()]
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(f"onnxruntime provider(s) {', '.join(missing)} not available (have {', '.join(available)})")
        return list(requested)
    return [p for p in PREFERRED if p in available]


class OnnxEngine:
    """The streaming encoder and decoder steps on onnxruntime."""

    def __init__(self, directory: str | os.PathLike, providers: list[str] | None = None, threads: int = 0,
                 io_binding: bool | None = None) -> None:
        """Open the export in `directory`. `io_binding`: keep the caches as
        onnxruntime values between steps instead of numpy arrays (default: on
        for a GPU provider, where it keeps them on the device)."""
        import onnxruntime as ort

        directory = Path(directory)
        try:
            self.manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{directory}: not an exported tokcodec model ({exc})") from None
        m = self.manifest
        if m.get("format", 1) != FORMAT:
            raise ValueError(f"{directory}: exported in format {m.get('format', 1)}, this version reads {FORMAT}: "
                             "export the model again (tokcodec export-onnx)")
        self.model, self.fingerprint = m["model"], m["fingerprint"]
        self.temporal_factor, self.spatial_factor, self.bits = m["temporal_factor"], m["spatial_factor"], m["bits"]
        self.providers = choose_providers(providers)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.sessions = {
            g: ort.InferenceSession(str(directory / f"{g}.onnx"), options, providers=self.providers) for g in GRAPHS
        }
        self.device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self.io_binding = self.device != "cpu" if io_binding is None else io_binding

    def _run(self, graph: str, main: str, x: np.ndarray, names: list[str], caches: list | None) -> tuple[np.ndarray, list]:
        session = self.sessions[graph]
        outputs = [o.name for o in session.get_outputs()]
        if not self.io_binding:
            feeds = {main: x, **dict(zip(names, caches or []))}
            result = session.run(None, feeds)
            return result[0], result[1:]
        # bind inputs and outputs so the caches never leave the device (on a GPU)
        binding = session.io_binding()
        binding.bind_cpu_input(main, x)
        for name, cache in zip(names, caches or []):
            binding.bind_ortvalue_input(name, cache)
        binding.bind_output(outputs[0], "cpu")
        for name in outputs[1:]:
            binding.bind_output(name, self.device)
        session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return values[0].numpy(), values[1:]

    def encode_step(self, frames: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        graph = "encoder_first" if caches is None else "encoder_step"
        return self._run(graph, "frames", frames.astype(np.float32, copy=False), self.manifest["encoder_caches"], caches)

    def decode_step(self, latent: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        graph = "decoder_first" if caches is None else "decoder_step"
        return self._run(graph, "latent", latent.astype(np.float32, copy=False), self.manifest["decoder_caches"], caches)
