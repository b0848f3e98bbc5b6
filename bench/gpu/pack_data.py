"""Pack training media for a lent GPU machine, at the size training reads it.

Training (`codec.data.training_frames`) reads at most `max_frames_per_video`
frames of each file and downscales them so that the longer side is at most
`max_side` (384 pixels). The device tool carries at most 64 MiB and the
machine decodes with OpenCV, not PyAV. So this writes each video's training
frames, decoded by PyAV as on the CPU and already downscaled, as one H.264
MP4 (crf 12, 4:2:0: 44.9 / 44.6 dB PSNR-Y and 41.6 / 40.8 dB RGB PSNR
against the training frames on Megamind.avi / tree.avi, far above what the
tokenizer reconstructs), and each image as a 1-frame MP4. The shared
corpus's 8 training videos and `bench/train_data` (72 MB as fetched) pack
into 36 MB (6,610 frames; the noisy underwater diver.mov alone 5.9 MB),
and the device then sees the frames the CPU runs see (OpenCV reads 68 of
tree.avi's frames where PyAV's constant-rate conversion gives 444; from
the packed file OpenCV 5.0 reads all 444, and all 6,610 in all).

    .venv/bin/python bench/gpu/pack_data.py ~/.cache/tokcodec/corpus/{vtest.avi,...} \\
        ~/.cache/tokcodec/train-extra -o .gpu_data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokcodec.codec.data import DataConfig, find_media, training_frames
from tokcodec.codec.io import VideoError
from tokcodec.codec.video_writer import write_video

CRF = 12


def pack(paths: list[str], out: Path, config: DataConfig = DataConfig()) -> int:
    """Write every video and image under `paths` into `out` as MP4; returns the frames written."""
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in find_media(paths):
        try:
            small = training_frames(path, config)
        except VideoError as exc:
            print(f"skipping {exc}")
            continue
        if small is None:
            print(f"skipping {path}: no frames")
            continue
        # x264 with 4:2:0 chroma wants even sizes: drop an odd last row or column
        h, w = small.shape[1] // 2 * 2, small.shape[2] // 2 * 2
        dest = out / f"{path.name}.mp4"  # movie.avi and movie.mp4 both exist
        n = write_video(dest, small[:, :h, :w], 25, crf=CRF)
        total += n
        print(f"{dest.name}: {n} frames of {w}x{h}, {dest.stat().st_size / 1e6:.1f} MB")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="videos, images or folders of them")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the packed MP4s (e.g. .gpu_data)")
    args = ap.parse_args()
    print(f"{pack(args.paths, args.out)} frames in {args.out}")


if __name__ == "__main__":
    main()
