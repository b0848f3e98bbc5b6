"""Debian's chromium, headless, driven by selenium: for the end-to-end browser
test and the browser benchmark (bench/browser.py).

`find_chromium()` says whether chromium and chromedriver are installed (the
Makefile's `browser` target installs them where it can); `chromium(camera)`
opens a driver whose fake camera plays a y4m clip (`write_y4m` makes one).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None where either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(camera: Path | None = None) -> Iterator["object"]:
    """A headless chromium selenium driver; its fake camera plays `camera` (a y4m clip), if given."""
    from selenium import webdriver

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]
    if camera is not None:
        args.append(f"--use-file-for-fake-video-capture={camera}")
    for arg in args:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 60) -> object:
    """Run `script` in the page until it returns something truthy; that value, or AssertionError on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    last = driver.execute_script("return window.tokcodec && window.tokcodec.lastError")
    raise AssertionError(f"timed out waiting for: {script} (last error: {last})")


def write_y4m(path: Path, n: int = 30, width: int = 160, height: int = 120, fps: int = 25) -> None:
    """A moving gradient as a y4m clip (what --use-file-for-fake-video-capture reads)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        y, x = np.mgrid[:height, :width]
        for i in range(n):
            rgb = np.stack([(x + 4 * i) % 256, y * 2 % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
