"""End to end in a real browser: Debian's chromium (headless), driven by selenium,
with a fake camera fed from a y4m clip. The page plays a .tok (frames arrive,
at the right size) and the live ingest records a .tok that decodes.

Skips, saying why, where chromium, chromedriver or selenium is missing
(`make test` installs them where it can: see the Makefile).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_av_source

pytest.importorskip("aiortc")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

import tokcodec  # noqa: E402
from tokcodec.cli import main  # noqa: E402
from tokcodec.streaming.browser import chromium, find_chromium, wait_for, write_y4m  # noqa: E402
from tokcodec.streaming.server import IngestConfig, ServerThread, TokServer  # noqa: E402

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
)


def test_page_plays_a_tok_and_records_the_camera(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    make_av_source(tmp_path / "src.mp4", n=17, fps=25)  # 64x48
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "src.mp4"), "-o", str(folder / "clip.tok"), "-q"])
    assert r.exit_code == 0, r.output
    write_y4m(tmp_path / "camera.y4m")
    server = TokServer(folder, ingest=IngestConfig(fps=10, max_side=96, chunk_frames=9))
    with ServerThread(server) as srv:
        with chromium(tmp_path / "camera.y4m") as driver:
            driver.get(f"http://127.0.0.1:{srv.port}/")
            wait_for(driver, "return document.querySelector('button[data-file=\"clip.tok\"]') !== null")
            listed = driver.execute_script(
                "return document.querySelector('button[data-file=\"clip.tok\"]').parentElement.textContent")
            info = tokcodec.tok_info(folder / "clip.tok")
            cw, ch = info["coded_size"]
            assert f"clip.tok: 64x48 (decoded at {cw}x{ch}), quality {info['quality']}," in listed, listed
            # playback: frames arrive, at the file's size
            driver.execute_script("window.tokcodecPlay('clip.tok')")
            wait_for(driver, "return window.tokcodec.framesShown >= 5")
            size = driver.execute_script("const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight]")
            assert size == [64, 48]
            # live ingest from the fake camera: the reconstruction comes back, the .tok grows
            driver.execute_script("window.tokcodec.framesShown = 0; window.tokcodecCamera()")
            name = wait_for(driver, "return window.tokcodec.recording")
            wait_for(driver, "return window.tokcodec.framesShown >= 12", timeout=90)
            size = driver.execute_script("const v = document.getElementById('video'); return [v.videoWidth, v.videoHeight]")
            assert size == [96, 72]  # the 160x120 camera scaled to at most 96 pixels
            driver.execute_script("window.tokcodecStop()")
        end = time.monotonic() + 30
        while server.tasks and time.monotonic() < end:
            time.sleep(0.2)
        assert not server.tasks
    info = tokcodec.tok_info(folder / name)
    assert (info["width"], info["height"]) == (96, 72) and info["frames"] >= 12
    tokcodec.decode_file(folder / name, tmp_path / "live.mp4")
    assert tokcodec.codec.io.probe(tmp_path / "live.mp4").frames == info["frames"]
