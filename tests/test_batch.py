import json
import os
import subprocess
import sys
import threading

import pytest

from text3d.app.batch import plan_batch, run_batch
from text3d.app.prompt_files import BatchItem, read_prompt_file
from text3d.cli import main
from text3d.errors import UserError
from text3d.stage.trainer import Callback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_txt_prompt_file(tmp_path):
    f = write(
        tmp_path / "p.txt",
        "# a comment\n\n"
        "a red cube\n"
        "   # an indented comment\n"
        'a  blue\tsphere | seed=3 coarse.max_steps=5 negative="blurry, low quality"\n'
        "a chair | coarse.camera.fov_range=[40,70]\n"
        "a dog |\n",
    )
    assert read_prompt_file(f) == [
        BatchItem(3, "a red cube", []),
        BatchItem(5, "a blue sphere", ["coarse.max_steps=5"], 3, "blurry, low quality"),
        BatchItem(6, "a chair", ["coarse.camera.fov_range=[40,70]"]),
        BatchItem(7, "a dog", []),
    ]


def test_jsonl_prompt_file(tmp_path):
    f = write(
        tmp_path / "p.jsonl",
        '{"prompt": "a red cube"}\n'
        "\n# comment\n"
        '{"prompt": "a cat", "seed": 2, "negative": "it\'s \\"blurry\\"", "overrides": {"coarse": {"max_steps": 5}}}\n'
        '{"prompt": "a dog", "overrides": ["coarse.max_steps=7"]}\n'
        '{"prompt": "a hat", "overrides": {"prompt.view_dependent": false, "trainer.device": "cpu"}}\n',
    )
    assert read_prompt_file(f) == [
        BatchItem(1, "a red cube", []),
        BatchItem(4, "a cat", ["coarse.max_steps=5"], 2, 'it\'s "blurry"'),
        BatchItem(5, "a dog", ["coarse.max_steps=7"]),
        BatchItem(6, "a hat", ["prompt.view_dependent=false", 'trainer.device="cpu"']),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("p.txt", "a cube\n\n | seed=3\n", ":3: prompt is empty"),
        ("p.txt", "a cube\n\x00\x01 | seed=3\n", ":2: prompt has only whitespace"),
        ("p.txt", "a cube | seed=x\n", ":1: seed must be an integer, got 'x'"),
        ("p.txt", "# c\na cube | blurry\n", ":2: option 'blurry' is not KEY=VALUE"),
        ("p.txt", 'a cube | negative="oops\n', ":1: cannot split the options after '|': No closing quotation"),
        ("p.txt", "a cube | seed=1 seed=2\n", ":1: seed is given twice"),
        ("p.jsonl", '{"prompt": "a"}\n{"prompt": "b",}\n', ":2: not valid JSON"),
        ("p.jsonl", '["a cube"]\n', ":1: expected a JSON object, got list"),
        ("p.jsonl", '{"text": "a cube"}\n', ":1: unknown field 'text'"),
        ("p.jsonl", '{"seed": 1}\n', ":1: no 'prompt'"),
        ("p.jsonl", '{"prompt": "a", "seed": true}\n', ":1: 'seed' must be an integer, got true"),
        ("p.jsonl", '{"prompt": "a", "overrides": "x=1"}\n', ":1: 'overrides' must be an object or a list"),
        ("p.yaml", "a cube\n", "must end in .txt or .jsonl"),
        ("p.txt", "# nothing\n\n", "has no prompts"),
    ],
)
def test_bad_prompt_files_name_the_line(tmp_path, name, text, message):
    f = write(tmp_path / name, text)
    with pytest.raises(UserError) as e:
        read_prompt_file(f)
    assert message in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_plan_layers_validates_and_names_runs(tmp_path, tiny_sd_path):
    f = write(
        tmp_path / "p.txt",
        "a red cube\n"
        "A red cube!\n"  # the same slug and seed: a second directory
        "a red cube | seed=7\n"
        'a cat | negative="it\'s \\"x\\"" coarse.max_steps=4\n',
    )
    out = tmp_path / "out"
    plan = plan_batch(read_prompt_file(f), out, "tiny-test", ["seed=5", "coarse.max_steps=3"], str(tiny_sd_path))
    assert [r.run_dir.name for r in plan] == ["a-red-cube-5", "a-red-cube-5-2", "a-red-cube-7", "a-cat-5"]
    cat = plan[3].config
    assert (cat.prompt.negative, cat.coarse.max_steps, plan[0].config.coarse.max_steps) == ('it\'s "x"', 4, 3)
    assert cat.guide.sds.model.model == str(tiny_sd_path)

    # A directory holding a run of another config is never reused: the item moves on to the next name.
    (out / "a-red-cube-5").mkdir(parents=True)
    (out / "a-red-cube-5" / "config.yaml").write_text("seed: 99\n")
    assert [r.run_dir.name for r in plan_batch(read_prompt_file(f), out, "tiny-test", ["seed=5"])][:2] == [
        "a-red-cube-5-2", "a-red-cube-5-3"
    ]

    bad = write(tmp_path / "bad.txt", "a cube\na dog | coarse.max_step=3\n")
    with pytest.raises(UserError, match=r"bad.txt:2: config: unknown key 'coarse.max_step'.*max_steps"):
        plan_batch(read_prompt_file(bad), out, "tiny-test", source=str(bad))
    dup = write(tmp_path / "dup.txt", "a cube | seed=0\n# c\na  cube\n")
    with pytest.raises(UserError, match=r"dup.txt:3: same prompt, seed and overrides as line 1"):
        plan_batch(read_prompt_file(dup), out, "tiny-test", source=str(dup))


def test_a_failing_prompt_is_recorded_and_the_batch_goes_on(tmp_path, tiny_sd_path, capsys):
    f = write(tmp_path / "p.txt", "a red cube\na blue cube | guide.sds.model.model=/nonexistent\na green cube\n")
    out = tmp_path / "out"
    code = main(["batch", str(f), "--out-root", str(out), "--preset", "tiny-test", "--model", str(tiny_sd_path), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.strip() == f"2 done, 0 skipped, 1 failed (see {out / 'manifest.jsonl'})"
    assert f"{f}:2 failed: " in captured.err and "/nonexistent" in captured.err
    records = manifest(out)
    assert [r["status"] for r in records] == ["done", "failed", "done"]
    assert "/nonexistent" in records[1]["error"] and "\n" not in records[1]["error"]
    assert records[0]["error"] is None and str(out / "a-red-cube-0" / "model.glb") in records[0]["outputs"]
    assert sorted(p.name for p in out.iterdir()) == ["a-green-cube-0", "a-red-cube-0", "manifest.jsonl"]


class StopSecondPrompt(Callback):
    """Stops the batch at coarse step 2 of the second prompt; records where each stage started."""

    def __init__(self, event=None):
        self.event, self.prompts, self.starts = event, 0, []

    def on_start(self, progress):
        self.prompts += progress.stage == "coarse"
        self.starts.append((progress.stage, progress.step))

    def on_step(self, progress):
        if self.event is not None and self.prompts == 2 and progress.step == 2:
            self.event.set()


def test_an_interrupted_batch_resumes_without_redoing_finished_runs(tmp_path, tiny_sd_path):
    f = write(tmp_path / "p.txt", "a red cube\na blue cube\na green cube\n")
    items, out = read_prompt_file(f), tmp_path / "out"
    kwargs = {"preset": "tiny-test", "model": str(tiny_sd_path)}
    event = threading.Event()
    first = run_batch(items, out, callbacks=[StopSecondPrompt(event)], stop_event=event, **kwargs)
    assert [r["status"] for r in first.records] == ["done", "stopped", "pending"] == [
        r["status"] for r in manifest(out)
    ]
    assert first.exit_code == 1 and first.summary().startswith("1 done, 0 skipped, 0 failed, 2 unfinished")
    finished = out / "a-red-cube-0"
    stamps = {p: p.stat().st_mtime_ns for p in finished.rglob("*")}

    spy = StopSecondPrompt()
    second = run_batch(items, out, callbacks=[spy], **kwargs)
    assert [r["status"] for r in second.records] == ["done", "done", "done"] == [r["status"] for r in manifest(out)]
    # The run finished earlier keeps its record (time, outputs) and says it was skipped this time.
    assert [r["skipped"] for r in manifest(out)] == [True, False, False]
    assert manifest(out)[0]["seconds"] == first.records[0]["seconds"] and first.records[0]["seconds"] > 0
    assert manifest(out)[0]["outputs"] == first.records[0]["outputs"]
    assert second.exit_code == 0 and second.summary().startswith("2 done, 1 skipped, 0 failed (see")
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*")} == stamps
    assert spy.starts[0] == ("coarse", 2)  # the stopped run continued from its checkpoint
    assert spy.starts.count(("coarse", 0)) == 1  # only the third prompt started from scratch


def test_two_processes_run_every_prompt_exactly_once(tmp_path, tiny_sd_path):
    f = write(
        tmp_path / "p.txt",
        "a red cube\na blue cube | seed=2\na green cube\na hat | guide.sds.model.model=/nonexistent\n",
    )
    out = tmp_path / "out"
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
    ]
    batch = ["-m", "text3d", "batch", str(f), "--out-root", str(out), "--preset", "tiny-test",
             "--model", str(tiny_sd_path), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launch, *batch], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0  # the failed prompt (on rank 1) fails the whole launch
    assert proc.stdout.count("3 done, 0 skipped, 1 failed") == 1, proc.stderr[-3000:]  # from rank 0 only
    records = manifest(out)
    assert [(r["line"], r["status"], r["rank"]) for r in records] == [
        (1, "done", 0), (2, "done", 1), (3, "done", 0), (4, "failed", 1)
    ]
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["a-blue-cube-2", "a-green-cube-0", "a-red-cube-0"]
    for run in runs:  # one export per run directory: no prompt ran twice
        assert (run / "log.txt").read_text().count(" export: ") == 1
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["manifest.jsonl"]  # shards merged and removed
