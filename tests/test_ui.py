"""The web UI, launched in-process on the tiny offline model and driven like a user: through ``gradio_client``
(the same endpoints the page calls) and through a real headless Chromium. (docs/ui.png comes from the real default
instead: ``python docs/ui_screenshot.py``.)
"""

import argparse
import socket
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from text3d.testing.browser import free_port
from text3d.ui.command import add_ui_parser

STATUS, PREVIEW, DOWNLOADS, VIDEO, GALLERY, PICKER, MODEL = range(7)
LONG = 2000  # coarse steps of a job that is meant to be cancelled


def ui_args(*argv: str) -> argparse.Namespace:
    """``text3d ui ARGV`` parsed by the real parser."""
    parser = argparse.ArgumentParser()
    add_ui_parser(parser.add_subparsers())
    return parser.parse_args(["ui", "--host", "127.0.0.1", "--port", str(free_port()), *argv])


def serve(tmp_path_factory, model: str, *extra: str):
    from text3d.ui.app import launch

    root = tmp_path_factory.mktemp("outputs")
    demo = launch(ui_args("--output-root", str(root), "--preset", "tiny-test", "--model", model, *extra),
                  prevent_thread_lock=True)
    return demo, root


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio-cache")))
        yield


@pytest.fixture(scope="module")
def server(env, tmp_path_factory, tiny_sd_path):
    """The app on the tiny model, shared by the tests (each is its own browser session)."""
    demo, root = serve(tmp_path_factory, str(tiny_sd_path))
    yield demo.local_url, root
    demo.close()


def client(url: str) -> Client:
    """A new browser session, seeing files as the server's FileData (url, orig_name) instead of downloads."""
    return Client(url, verbose=False, download_files=False)


def submit(c: Client, prompt: str, steps: int = 6, seed: int = 0):
    return c.submit(prompt, "", "tiny-test", seed, steps, 7.5, api_name="/generate")


def wait_for_step(job, timeout: float = 60.0) -> None:
    """Until the job's streamed status shows a training step."""
    deadline = time.monotonic() + timeout
    while not any("step" in out[STATUS] for out in job.outputs()):
        assert not job.done(), job.outputs()
        assert time.monotonic() < deadline, "no progress update arrived"
        time.sleep(0.1)


def test_generate_streams_progress_and_serves_the_run(server):
    url, root = server
    job = submit(client(url), "a red cube")
    final = job.result(timeout=120)
    statuses = [out[STATUS] for out in job.outputs()]
    assert statuses[0].startswith("Loading the model")
    assert any("**coarse** (stage 1 of 3) · step" in s for s in statuses)
    assert any("**texture** (stage 3 of 3)" in s for s in statuses)
    assert any(out[PREVIEW] for out in job.outputs()[:-1]), "no live preview"
    assert final[STATUS].startswith("Done in") and "a-red-cube-0" in final[STATUS]

    run = root.resolve() / final[PICKER]["value"]
    assert run.parent == root.resolve() and run.name == "a-red-cube-0"
    # Gradio serves copies from its cache: each must be the very file in the run directory.
    served = {f["orig_name"]: f for f in [*final[DOWNLOADS], final[VIDEO]]}
    assert set(served) == {"model.glb", "turntable.mp4", "model-obj.zip"}
    for name, data in served.items():
        assert httpx.get(data["url"]).content == (run / name).read_bytes(), name
    assert [item["caption"] for item in final[GALLERY]] == ["a-red-cube-0"]
    opened = client(url).predict("a-red-cube-0", api_name="/open_run")  # what a click in the gallery shows
    assert opened[MODEL]["orig_name"] == "model.glb"
    assert httpx.get(opened[MODEL]["url"]).content == (run / "model.glb").read_bytes()
    with zipfile.ZipFile(run / "model-obj.zip") as zf:
        assert sorted(zf.namelist()) == ["model.mtl", "model.obj", "model.png"]
    assert not list(run.glob(".*.tmp*")), "temp files left behind"


def test_run_directories_never_overwrite_a_finished_run(tmp_path):
    from text3d.app.presets import load_config
    from text3d.config import to_yaml
    from text3d.ui.runs import choose_run_dir

    config = load_config("tiny-test", ["prompt.text=A red cube!"])
    assert choose_run_dir(tmp_path, config) == (tmp_path / "a-red-cube-0", False)
    stopped = tmp_path / "a-red-cube-0"
    stopped.mkdir()
    (stopped / "config.yaml").write_text(to_yaml(config))
    assert choose_run_dir(tmp_path, config) == (stopped, True)  # same settings: continue it
    other = load_config("tiny-test", ["prompt.text=A red cube!", "coarse.max_steps=7"])
    assert choose_run_dir(tmp_path, other) == (tmp_path / "a-red-cube-0-2", False)
    (stopped / "metrics.json").write_text("{}")
    (stopped / "model.glb").write_bytes(b"")
    assert choose_run_dir(tmp_path, config) == (tmp_path / "a-red-cube-0-2", False)  # finished: left alone


def test_cancel_stops_training_and_keeps_a_checkpoint(server):
    url, root = server
    c = client(url)
    job = submit(c, "a blue sphere", steps=LONG)
    wait_for_step(job)
    answer = c.predict(api_name="/cancel")
    final = job.result(timeout=60)
    for status in (answer[STATUS], final[STATUS]):
        assert status.startswith("Stopped at step") and "checkpoint kept" in status, status
    step = int(final[STATUS].split()[3])
    assert 0 < step < LONG // 10
    run = root / "a-blue-sphere-0"
    assert (run / "checkpoints" / f"coarse-{step:07d}.pt").is_file()
    assert not (run / "model.glb").exists()
    # Generate again with the same settings: it resumes from that checkpoint (then cancel it again).
    job = submit(c, "a blue sphere", steps=LONG)
    wait_for_step(job)
    c.predict(api_name="/cancel")
    first = next(out[STATUS] for out in job.outputs() if "step" in out[STATUS])
    assert int(first.split("step ")[1].split()[0]) >= step
    assert job.result(timeout=60)[PICKER]["value"] == "a-blue-sphere-0"


def test_a_full_queue_is_refused_with_a_busy_error(env, tmp_path_factory, tiny_sd_path):
    demo, _ = serve(tmp_path_factory, str(tiny_sd_path), "--max-queue", "1")
    try:
        sessions = [client(demo.local_url) for _ in range(3)]
        running = submit(sessions[0], "a green chair", steps=LONG)
        wait_for_step(running)
        jobs = [submit(c, "a wooden dog") for c in sessions[1:]]  # one may wait (max 1), the next cannot
        refused = []
        for job in jobs:
            try:
                job.result(timeout=1)
            except QueueError as e:
                refused.append(str(e))
            except TimeoutError:
                job.cancel()  # waiting in the queue: withdraw it
        assert refused and "Queue is full" in refused[0]
        sessions[0].predict(api_name="/cancel")
        assert running.result(timeout=60)[STATUS].startswith("Stopped at step")
    finally:
        demo.close()


def test_bad_input_is_one_clear_message(server):
    url, root = server
    c = client(url)
    before = sorted(root.iterdir())
    with pytest.raises(AppError, match="prompt is empty"):  # whitespace is cleaned away, whatever the front end
        submit(c, "   ").result(timeout=60)
    with pytest.raises(AppError, match="tokens"):
        submit(c, "a red cube " * 30).result(timeout=60)
    with pytest.raises(AppError, match="not in the list of choices"):
        c.predict("a cube", "", "../../etc/passwd", 0, 6, 7.5, api_name="/generate")
    with pytest.raises(AppError, match="less than minimum value 1"):
        c.predict("a cube", "", "tiny-test", 0, 0, 7.5, api_name="/generate")
    assert sorted(root.iterdir()) == before  # nothing written


def test_only_the_output_root_is_exposed(server, tmp_path):
    url, root = server
    c = client(url)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "config.yaml").write_text("seed: 0\n")
    (root / "linked").symlink_to(outside)
    for name in ("../" + outside.name, str(outside), "linked", ".", "..", "", "no-such-run", "x" * 10_000):
        with pytest.raises(AppError, match="no run named"):
            c.predict(name, api_name="/open_run")
    # A link planted inside a run is never followed, and does not break the other runs.
    planted = root / "planted-0"
    planted.mkdir()
    (planted / "config.yaml").write_text("seed: 0\n")
    (planted / "contact_sheet.png").symlink_to("/etc/passwd")
    opened = c.predict("planted-0", api_name="/open_run")
    assert "planted-0" in opened[STATUS] and opened[GALLERY] is not None
    # Files: only the output root (and Gradio's own cache) are served; not the working directory, not /etc.
    base = url.rstrip("/") + "/gradio_api/file="
    assert httpx.get(base + "/etc/hostname").status_code == 403
    assert httpx.get(base + str(Path(__file__).resolve())).status_code == 403
    (root / "note.txt").write_text("hello")
    assert httpx.get(base + str((root / "note.txt").resolve())).status_code == 200
    # The form takes no files, so Gradio's upload route (always open) is capped.
    upload = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("big.bin", bytes(2 << 20))})
    assert upload.status_code == 413


def test_missing_model_is_one_clear_message(env, tmp_path_factory):
    demo, root = serve(tmp_path_factory, "no-such-org/no-such-model")
    try:
        with pytest.raises(AppError, match="no-such-org/no-such-model"):
            submit(client(demo.local_url), "a cube").result(timeout=60)
        assert not any(root.iterdir())
    finally:
        demo.close()


# --- a real browser ------------------------------------------------------------------------------------------------
@pytest.fixture
def browser(tmp_path):
    from text3d.testing.browser import headless_chromium, missing

    if (why := missing()) is not None:
        pytest.skip(why)
    driver = headless_chromium(tmp_path / "chromium-profile")
    yield driver
    driver.quit()


def test_browser_generates_and_shows_the_model(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    wait = WebDriverWait(browser, 90)
    browser.get(url)
    prompt = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea, #prompt input")))
    prompt.send_keys("a wooden chair")
    browser.find_element(By.XPATH, "//button[normalize-space()='Generate']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Done in"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#model3d canvas")))
    for name in ("model.glb", "model-obj.zip"):
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#downloads a[download='{name}']")))
    time.sleep(2)  # let the viewer draw the model and the video load
    assert browser.save_screenshot(str(tmp_path / "ui.png"))
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("Done in") and "a-wooden-chair-0" in status
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    # A click on a past run's contact sheet reopens it.
    browser.find_element(By.CSS_SELECTOR, "#past-runs img[alt='a-wooden-chair-0']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "a-wooden-chair-0 (finished)"))


def test_the_form_offers_the_presets_that_can_run_here(monkeypatch, tiny_sd_path):
    from text3d.app import presets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(presets, "cuda_available", lambda: False)
    offered, hidden = presets.runnable_presets(None, "toy")
    assert offered == ["toy"] and hidden == {"preview": "needs a CUDA GPU", "dreamfusion-sd": "needs a CUDA GPU"}
    monkeypatch.setattr(presets, "cuda_available", lambda: True)
    offered, hidden = presets.runnable_presets(None, "toy")
    assert offered == ["toy"] and all("is not downloaded and the hub is off" in why for why in hidden.values())
    offered, hidden = presets.runnable_presets(str(tiny_sd_path), "tiny-test")  # --model: any generation preset
    assert offered == ["tiny-test", "toy", "preview", "dreamfusion-sd"] and hidden == {}


@pytest.mark.parametrize("port, message", [("99999", "--port must be between 1 and 65535, got 99999"),
                                           ("0", "--port must be between 1 and 65535, got 0")])
def test_a_bad_port_is_one_line(port, message, capsys):
    from text3d.cli import main

    assert main(["ui", "--port", port]) == 2
    assert capsys.readouterr().err.strip() == f"text3d: error: {message}"


def test_a_port_in_use_is_one_line_naming_the_option(capsys):
    from text3d.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"text3d: error: --port {port}: cannot listen on 127.0.0.1:{port}") and "\n" not in err


def test_the_toy_form_suggests_a_prompt_the_toy_model_knows(tmp_path, tiny_sd_path):
    from text3d.toy.bundled import TOY_EXAMPLE
    from text3d.ui.app import build_app

    def prompt_box(demo):
        return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "prompt")

    box = prompt_box(build_app(tmp_path, "toy", None, []))
    assert box.placeholder == TOY_EXAMPLE and box.info.startswith('the bundled toy model knows "a COLOUR SHAPE"')
    box = prompt_box(build_app(tmp_path, "tiny-test", str(tiny_sd_path), []))  # a real model: any prompt
    assert box.placeholder != TOY_EXAMPLE and box.info is None
