"""docs/ui.png from the real default: `text3d ui` as a CPU user starts it (the bundled toy model), one prompt
typed and generated in headless Chromium, the page captured once the run is done.

    python docs/ui_screenshot.py [PROMPT] [--out docs/ui.png]     # PROMPT: the toy example, "a yellow cone"

Needs chromium, chromium-driver and selenium (as the browser test). Takes a toy run's time (1-3 minutes).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from text3d.testing.browser import free_port, headless_chromium, missing
from text3d.toy.bundled import TOY_EXAMPLE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default=TOY_EXAMPLE)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "ui.png")
    args = parser.parse_args()
    if (why := missing()) is not None:
        print(f"ui_screenshot: {why}", file=sys.stderr)
        return 2
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-m", "text3d", "ui", "--port", str(port), "--output-root",
                                   str(Path(tmp) / "outputs")], env={**os.environ, "HF_HUB_OFFLINE": "1"})
        browser = headless_chromium(Path(tmp) / "profile")
        try:
            deadline = time.monotonic() + 120
            while True:  # until the server answers
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("text3d ui did not start") from None
                    time.sleep(0.5)
            browser.get(f"http://127.0.0.1:{port}")
            wait = WebDriverWait(browser, 600)
            prompt = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea, #prompt input")))
            prompt.send_keys(args.prompt)
            started = time.monotonic()
            browser.find_element(By.XPATH, "//button[normalize-space()='Generate']").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Done in"))
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#model3d canvas")))
            time.sleep(3)  # let the viewer draw the model and the video load
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if not browser.save_screenshot(str(args.out)):
                raise RuntimeError(f"could not write {args.out}")
            status = browser.find_element(By.ID, "status").text
        finally:
            browser.quit()
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}: {status!r} ({time.monotonic() - started:.0f} s from the click)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
