"""The tokcodec command: round trip, listing models, and clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import audio_seconds, make_av_source

from tokcodec.cli import main
from tokcodec.codec import DEFAULT_MODEL
from tokcodec.codec.io import probe

TOKCODEC = [sys.executable, "-m", "tokcodec"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TOKCODEC, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "in.mp4"
    make_av_source(path, n=11, fps=25)
    return path


def test_reconstruct_keeps_geometry_rate_and_audio(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["reconstruct", str(source), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    info, src = probe(out), probe(source)
    assert (info.width, info.height, info.fps, info.frames) == (src.width, src.height, src.fps, 11)
    assert info.has_audio and abs(audio_seconds(out) - audio_seconds(source)) < 0.05
    assert result.output == ""  # --quiet prints nothing


def test_reconstruct_reports_what_it_did(source: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["reconstruct", str(source), "-o", str(tmp_path / "o.mp4")])
    assert result.exit_code == 0
    assert "11 frames, 64x48" in result.output and "PSNR" in result.output


def test_existing_output_is_kept_without_force(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    proc = run("reconstruct", str(source), "-o", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"tokcodec: error: {out}: already exists (use --force to overwrite)"
    assert out.read_bytes() == b"precious"
    assert run("reconstruct", str(source), "-o", str(out), "--force", "-q").returncode == 0
    assert probe(out).frames == 11


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 10])
def test_bad_input_fails_with_one_line_and_no_output(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    out = tmp_path / "out.mp4"
    proc = run("reconstruct", str(bad), "-o", str(out))
    assert proc.returncode == 1
    assert proc.stderr.startswith("tokcodec: error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_missing_input_and_bad_model(source: Path, tmp_path: Path) -> None:
    proc = run("reconstruct", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"))
    assert proc.returncode == 1 and "nope.mp4" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run("reconstruct", str(source), "-o", str(tmp_path / "o.mp4"), "--model", "nope")
    assert proc.returncode == 1 and "unknown model 'nope'" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_models_json() -> None:
    result = CliRunner().invoke(main, ["models", "--json"])
    rows = json.loads(result.output)
    default = [r for r in rows if r["default"]]
    assert len(default) == 1 and default[0]["name"] == DEFAULT_MODEL
    assert {r["compression"] for r in rows} >= {"4x8x8", "1x8x8", "4x16x16"}
    for r in rows:  # the rate ladder: LFQ levels ascend to the model's bits; the ladder's points ascend in bits and scale
        assert r["levels"] == sorted(r["levels"]) and r["levels"][-1] == r["bits"]
        points = r["quality_levels"]
        assert all(r["levels"][p["level"]] == p["bits"] for p in points) and 0 <= r["default_quality"] < len(points)
        for key in ("bits", "scale"):
            assert [p[key] for p in points] == sorted(p[key] for p in points)


@pytest.mark.slow
def test_demo_round_trips_the_shipped_sample(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "sample-decoded.mp4").frames == 33
    assert "33 frames, 256x192" in result.output and "PSNR (RGB)" in result.output
    assert "refined 2 steps," in result.output  # encode's default
    assert (tmp_path / "sample.tok").stat().st_size < 20000
