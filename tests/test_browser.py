"""End to end in a real browser: Debian's chromium (headless), driven by selenium,
with a fake camera fed from a y4m clip. The page plays a .tok (frames arrive,
at the right size) and the live ingest records a .tok that decodes.

Skips, saying why, where chromium, chromedriver or selenium is missing
(`make test` installs them where it can: see the Makefile).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import make_av_source

pytest.importorskip("aiortc")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from aiohttp import web  # noqa: E402

import tokcodec  # noqa: E402
from tokcodec.cli import main  # noqa: E402
from tokcodec.streaming.server import IngestConfig, TokServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
)


def write_y4m(path: Path, n: int = 30, width: int = 160, height: int = 120) -> None:
    """A moving gradient as a y4m clip (what --use-file-for-fake-video-capture reads)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        y, x = np.mgrid[:height, :width]
        for i in range(n):
            rgb = np.stack([(x + 4 * i) % 256, y * 2 % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


class ServerThread:
    """`tokcodec serve` in a thread with its own event loop, on a free port."""

    def __init__(self, server: TokServer) -> None:
        self.server, self.loop = server, asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.server.app())
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def wait_for(driver, script: str, timeout: float = 60) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script} (last error: {driver.execute_script('return window.tokcodec && window.tokcodec.lastError')})")


def test_page_plays_a_tok_and_records_the_camera(tmp_path: Path) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    make_av_source(tmp_path / "src.mp4", n=17, fps=25)  # 64x48
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "src.mp4"), "-o", str(folder / "clip.tok"), "-q"])
    assert r.exit_code == 0, r.output
    write_y4m(tmp_path / "camera.y4m")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={tmp_path / 'camera.y4m'}",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    server = TokServer(folder, ingest=IngestConfig(fps=10, max_side=96, chunk_frames=9))
    with ServerThread(server) as srv:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
        try:
            driver.get(f"http://127.0.0.1:{srv.port}/")
            wait_for(driver, "return document.querySelector('button[data-file=\"clip.tok\"]') !== null")
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
        finally:
            driver.quit()
        end = time.monotonic() + 30
        while server.tasks and time.monotonic() < end:
            time.sleep(0.2)
        assert not server.tasks
    info = tokcodec.tok_info(folder / name)
    assert (info["width"], info["height"]) == (96, 72) and info["frames"] >= 12
    tokcodec.decode_file(folder / name, tmp_path / "live.mp4")
    assert tokcodec.codec.io.probe(tmp_path / "live.mp4").frames == info["frames"]
