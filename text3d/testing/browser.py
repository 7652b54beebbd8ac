"""A headless Chromium driven through selenium, and a free local port for the server it visits, as the UI tests and
the UI screenshot use them."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

CHROMIUM = os.environ.get("TEXT3D_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TEXT3D_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing() -> str | None:
    """Why no browser can start here (None when one can)."""
    try:
        import selenium  # noqa: F401 -- only probing
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def headless_chromium(profile: Path):
    """A new headless Chromium (a 1400x1500 window, software WebGL for the 3D viewer) with its profile in
    ``profile``; the caller quits it."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # Software WebGL for the 3D viewer; newer Chromiums want it asked for.
                 "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--window-size=1400,1500",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
