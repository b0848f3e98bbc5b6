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

The repository itself now takes 35 MiB of the call's 64, so `--crf 20`
packs `bench/train_data` into 9.7 MB instead of 25 (PSNR-Y / RGB PSNR
against the training frames: diver.mov 38.8 / 37.5 dB, win005.mkv 36.0 /
31.8, wannaworktogether.mp4 44.6 / 39.0; still far above the tokenizer's
25 dB); the corpus at crf 12 is 12 MB.

    .venv/bin/python bench/gpu/pack_data.py ~/.cache/tokcodec/corpus/{vtest.avi,...} -o .gpu_data/corpus
    .venv/bin/python bench/gpu/pack_data.py /root/extra/train -o .gpu_data/extra --crf 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokcodec.codec.data import DataConfig, find_media, training_frames
from tokcodec.codec.io import VideoError
from tokcodec.codec.video_writer import write_video

CRF = 12


def pack(paths: list[str], out: Path, config: DataConfig = DataConfig(), crf: int = CRF) -> int:
    """Write every video and image under `paths` into `out` as MP4 (x264 at `crf`); returns the frames written."""
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
        n = write_video(dest, small[:, :h, :w], 25, crf=crf)
        total += n
        print(f"{dest.name}: {n} frames of {w}x{h}, {dest.stat().st_size / 1e6:.1f} MB")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="videos, images or folders of them")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the packed MP4s (e.g. .gpu_data)")
    ap.add_argument("--crf", type=int, default=CRF,
                    help="x264 CRF (higher: smaller files, for when the call's 64 MiB is tight)")
    args = ap.parse_args()
    print(f"{pack(args.paths, args.out, crf=args.crf)} frames in {args.out}")


if __name__ == "__main__":
    main()
