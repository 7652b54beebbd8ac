"""Check and measure text3d's whole GPU path in one command, on a bare CUDA machine, in under 8 minutes.

    python benchmarks/gpu_check.py --out DIR [--wheels DIR] [--budget SECONDS] [--skip PART ...] [--presets P ...]

Parts, in order, each in its own process with its own time limit (a part that fails or hangs is recorded and the
rest go on; parts are skipped once the budget is spent):

  env       Python, torch, CUDA, the GPU, nvcc, ninja, and which needed packages are importable
  install   the packages the GPU run needs and the machine lacks: from --wheels (a folder that
            benchmarks/gpu_wheels.py fills; no internet needed) or else from the package index
  model     a full-size Stable Diffusion 2.1-base with random weights (same cost as the real ones)
  build     text3d's CUDA kernels (cuda/, JIT) and nvdiffrast, side by side
  tests     the gpu-marked tests, and the kernel, precision and rasterizer test files
  sds_step  benchmarks/sds_step.py: the diffusion floor and each stage's step, per preset
  e2e       text3d generate at reduced steps per preset: each stage's steady step time, the fixed costs
            (model loading, export), minutes extrapolated to the full preset, peak GPU memory

Writes DIR/report.json, DIR/report.md, DIR/log.txt (every part's output) and DIR/sds_profile.txt (each stage's
step, op by op) and prints a summary. Without a CUDA device it rehearses: installs, checks imports, runs the
CPU-runnable tests and the benchmark code with a tiny model on the CPU (figures labelled as a rehearsal, meaningless
as timings), and says that no GPU was found.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What the GPU run imports beyond what a CUDA machine with torch, transformers and accelerate usually has:
# (import name, pip requirement, needed). imageio-ffmpeg (68 MB, an ffmpeg binary) is too big to carry; without it
# the end-to-end runs skip the turntable video.
REQUIREMENTS = [
    ("diffusers", "diffusers==0.42.1", True),
    ("importlib_metadata", "importlib-metadata==10.2.0", True),
    ("trimesh", "trimesh==5.2.0", True),
    ("xatlas", "xatlas==0.0.11", True),
    ("fast_simplification", "fast-simplification==0.2.0", True),
    ("scipy", "scipy==1.17.1", True),
    ("nvdiffrast", "diffrp-nvdiffrast==0.3.3.1", True),
    ("imageio_ffmpeg", "imageio-ffmpeg==0.8.1", False),
]
# Already on a typical CUDA machine (and on this project's lent one); checked, never installed.
EXPECTED = ["torch", "transformers", "accelerate", "huggingface_hub", "safetensors", "numpy", "PIL", "yaml",
            "skimage", "imageio", "psutil", "tqdm", "pytest"]
PARTS = {  # name: most seconds it may take
    "env": 60,
    "install": 120,
    "model": 120,
    "build": 300,
    "tests": 240,
    "sds_step": 200,
    "e2e": 300,
}
PRESETS = ("dreamfusion-sd", "preview")
# Reduced steps of the end-to-end runs; the first fifth of each stage is left out of the steady step time.
E2E_STEPS = {"coarse": 150, "geometry": 60, "texture": 40}
E2E_PROMPT = "a dslr photo of a hamburger"


# --------------------------------------------------------------------------------------------------------------------
# Orchestration


class Check:
    """Runs the parts as subprocesses of this script, each writing its figures to a JSON file."""

    def __init__(self, out: Path, wheels: Path | None, budget: float, skip: list[str], presets: list[str]) -> None:
        self.out = out
        self.skip = set(skip)
        self.presets = presets
        self.wheels = wheels
        self.deadline = time.monotonic() + budget
        self.work = Path(tempfile.mkdtemp(prefix="text3d-gpu-check-"))
        self.site = self.work / "site"
        self.log = out / "log.txt"
        self.report: dict = {"parts": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def env(self) -> dict[str, str]:
        paths = [str(self.site), str(REPO), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}

    def run_part(self, name: str) -> dict:
        left = self.deadline - time.monotonic()
        if name in self.skip:
            result = {"status": "skipped", "reason": "--skip"}
            self.report["parts"][name] = result
            return result
        if left < 20:
            result = {"status": "skipped", "reason": "the time budget is spent"}
            self.report["parts"][name] = result
            return result
        limit = min(PARTS[name], left)
        result_file = self.work / f"{name}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--out", str(self.out),
               "--work", str(self.work), "--until", str(time.time() + limit), "--presets", *self.presets,
               *(["--wheels", str(self.wheels)] if self.wheels else [])]
        code, seconds, tail = run_logged(cmd, self.env(), limit, self.log, f"part {name}")
        # A part stopped at its limit may have left what it measured so far in <part>.partial.json.
        source = result_file if result_file.exists() else self.work / f"{name}.partial.json"
        result = json.loads(source.read_text()) if source.exists() else {}
        if code == 124:
            status = "timeout"
        elif code != 0:
            status = "failed"
        else:
            status = result.pop("status", "ok")
        result.update(status=status, seconds=round(seconds, 1))
        if status in ("failed", "timeout"):
            result.setdefault("output_tail", tail)
        self.report["parts"][name] = result
        return result


def run_logged(cmd: list[str], env: dict, limit: float, log: Path, title: str,
               cwd: Path = REPO) -> tuple[int, float, str]:
    """Run ``cmd`` with a time limit (its whole process group is killed at the limit), appending its output to
    ``log``; returns (exit code, 124 on timeout; seconds; the last lines of its output)."""
    start = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n===== {title}: {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = 124
            f.write(f"\n----- {title} killed after {limit:.0f} s\n")
    seconds = time.monotonic() - start
    lines = log.read_text(errors="replace").splitlines()
    marker = max(i for i, line in enumerate(lines) if line.startswith(f"===== {title}: "))
    return code, seconds, "\n".join(lines[marker + 1:][-15:])


def orchestrate(args) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.wheels, args.budget, args.skip, args.presets)
    check.log.write_text("")
    env = check.run_part("env")
    cuda = bool(env.get("cuda_available"))
    check.report["mode"] = "gpu" if cuda else "rehearsal (no CUDA device)"
    check.run_part("install")
    model = check.run_part("model")
    if cuda:
        check.run_part("build")
    else:
        check.report["parts"]["build"] = {"status": "skipped", "reason": "no CUDA device"}
    check.run_part("tests")
    if model.get("status") == "ok":
        check.run_part("sds_step")
        check.run_part("e2e")
    check.report["seconds"] = round(args.budget - (check.deadline - time.monotonic()), 1)
    (out / "report.json").write_text(json.dumps(check.report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(check.report))
    print(summary(check.report))
    shutil.rmtree(check.work, ignore_errors=True)
    failed = [n for n, p in check.report["parts"].items() if p["status"] in ("failed", "timeout")]
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------------------------------
# Parts (each runs in its own process and writes WORK/<part>.json)


def part_env(args) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "nvcc": _first_line_of(["nvcc", "--version"], last=True),
        "ninja": _first_line_of(["ninja", "--version"]),
        "driver": _first_line_of(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count)
    info["packages"] = {name: _version(name) for name in [*EXPECTED, *(m for m, _, _ in REQUIREMENTS)]}
    return info


def part_install(args) -> dict:
    missing = [(module, req, needed) for module, req, needed in REQUIREMENTS
               if importlib.util.find_spec(module) is None]
    work = args.work
    result: dict = {"missing": [req for _, req, _ in missing], "installed": [], "unavailable": []}
    if missing:
        source = ["--no-index", "--find-links", str(args.wheels)] if args.wheels else []
        for module, req, needed in missing:
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                   "--disable-pip-version-check", "--target", str(work / "site"), *source, req]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                result["installed"].append(req)
            elif needed:
                raise RuntimeError(f"cannot install {req}: {done.stderr.strip().splitlines()[-1:]}")
            else:
                result["unavailable"].append(req)
    # The project imports with what is there now (a fresh interpreter sees the new site folder).
    code = "import text3d.cli, text3d.app.jobs, text3d.kernels, diffusers, trimesh, xatlas, fast_simplification"
    subprocess.run([sys.executable, "-c", code], check=True)
    result["turntable"] = importlib.util.find_spec("imageio_ffmpeg") is not None or any(
        r.startswith("imageio-ffmpeg") for r in result["installed"])
    return result


def part_model(args) -> dict:
    import torch

    model_dir = args.work / "model"
    if torch.cuda.is_available():
        from text3d.testing.sd21 import write_random_sd21

        write_random_sd21(model_dir, device="cuda")
        return {"model": "SD 2.1-base architecture, random weights", "path": str(model_dir)}
    from text3d.testing.tiny_models import make_tiny_sd

    make_tiny_sd(model_dir)
    return {"model": "tiny SD-like test model (rehearsal)", "path": str(model_dir)}


def part_build(args) -> dict:
    env = {**os.environ}
    log = args.work / "build.log"
    log.write_text("")
    jobs = {
        "kernels": [sys.executable, "-c", "import logging; logging.basicConfig(level=logging.INFO); "
                    "from text3d.kernels import build; print(build(verbose=True))"],
        # Through text3d's rasterizer, which loads nvdiffrast's plugin the way a run does.
        "nvdiffrast": [sys.executable, "-c", "import torch; from text3d.renderer.rasterizer import rasterize; "
                       "pos = torch.tensor([[[-1, -1, 0, 1], [1, -1, 0, 1], [0, 1, 0, 1.0]]], device='cuda'); "
                       "tri = torch.tensor([[0, 1, 2]], dtype=torch.int32, device='cuda'); "
                       "rast, _ = rasterize(pos, tri, (8, 8), backend='nvdiffrast'); "
                       "print('nvdiffrast ok, covered pixels:', int((rast[..., 3] > 0).sum()))"],
    }
    start, procs, result = time.monotonic(), {}, {}
    for name, cmd in jobs.items():
        f = open(args.work / f"build-{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT), f)
    for name, (proc, f) in procs.items():
        code = proc.wait()
        f.close()
        text = (args.work / f"build-{name}.log").read_text(errors="replace")
        print(f"----- build {name}\n{text}")
        result[name] = {"ok": code == 0, "seconds": round(time.monotonic() - start, 1)}
        if code != 0:
            result[name]["error"] = text.strip().splitlines()[-5:]
    if not all(r["ok"] for r in result.values()):
        result["status"] = "failed"
    return result


def part_tests(args) -> dict:
    # The whole of the kernel, precision and rasterizer files, and every gpu-marked test in the other files.
    files = ["tests/test_cuda_kernels.py", "tests/test_precision.py", "tests/test_rasterizer.py"]
    # Only files that have gpu tests are collected: others may import what this machine lacks (the UI's browser).
    others = [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").glob("test_*.py"))
              if str(p.relative_to(REPO)) not in files and "mark.gpu" in p.read_text()]
    runs = [("junit-files.xml", files)] + ([("junit-gpu.xml", ["-m", "gpu", *others])] if others else [])
    codes = []
    for junit, selection in runs:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={args.work / junit}",
               "-rs", *selection]
        codes.append(subprocess.run(cmd, cwd=REPO).returncode)
    result = _junit_summary([args.work / junit for junit, _ in runs])
    if any(code not in (0, 5) for code in codes) or result["failed"] or result["errors"]:  # 5: nothing collected
        result["status"] = "failed"
    return result


def part_sds_step(args) -> dict:
    import torch

    model = args.work / "model"
    figures = args.work / "sds_step.partial.json"  # written after each preset
    cmd = [sys.executable, str(REPO / "benchmarks" / "sds_step.py"), "--model", str(model), "--json", str(figures)]
    cmd += ["--profile", str(args.out / "sds_profile.txt")]  # where the time of each step goes, op by op
    if torch.cuda.is_available():
        cmd += [arg for p in args.presets for arg in ("--preset", p)]
    else:  # rehearsal: the script's code on the CPU with the tiny model and the test preset
        cmd += ["--cpu", "--preset", "tiny-test", "--steps", "1"]
    code = subprocess.run(cmd, cwd=REPO, check=False).returncode
    if not figures.exists():
        raise RuntimeError(f"benchmarks/sds_step.py exited {code} without figures")
    result = json.loads(figures.read_text())
    if code != 0:  # a stage failed: the figures measured before it are kept
        result["status"] = "failed"
    return result


def part_e2e(args) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    presets = args.presets if cuda else ("tiny-test",)
    install = args.work / "install.json"
    turntable = (json.loads(install.read_text()) if install.exists() else {}).get(
        "turntable", importlib.util.find_spec("imageio_ffmpeg") is not None)
    results, skipped, failed = {}, [], {}
    partial = args.work / "e2e.partial.json"  # what a part stopped at its limit still reports

    def keep(unfinished: dict) -> None:
        partial.write_text(json.dumps({"presets": results, "skipped_presets": skipped,
                                       "unfinished_presets": unfinished}))

    for preset in presets:
        started = time.time()
        if results and args.until - started < 1.3 * max(r["wall_seconds"] for r in results.values()) + 30:
            skipped.append(preset)  # not enough time left for another run like the last one
            continue
        try:
            results[preset] = e2e_run(preset, args.work, cuda, turntable, lambda st, p=preset: keep({p: st}))
            keep({})
        except Exception as exc:  # recorded; the next preset still runs
            traceback.print_exc()
            failed[preset] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return {"presets": results, "skipped_presets": skipped, "failed_presets": failed,
            **({"status": "failed"} if failed else {})}


def e2e_run(preset: str, work: Path, cuda: bool, turntable: bool, keep) -> dict:
    """One reduced generate: per stage the steady step time; the rest of the wall time as fixed costs.

    ``keep(stages)`` receives the stage figures so far after each stage, for a run stopped before its end.
    """
    import logging

    import torch

    from text3d.app.jobs import generate
    from text3d.app.presets import load_config
    from text3d.stage.trainer import Callback

    backends: list[str] = []

    class Backends(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if " backend" in record.getMessage():
                backends.append(record.getMessage())

    logging.getLogger("text3d").setLevel(logging.INFO)
    logging.getLogger("text3d").addHandler(Backends())
    logging.basicConfig(level=logging.INFO)

    def figures(stages: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for name, t in stages.items():
            # Steady state: from the first progress mark past a fifth of the steps to the last one.
            marks = [m for m in t["marks"] if m[0] >= max(steps[name] // 5, 1)]
            if len(marks) >= 2:
                steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
            else:  # too few steps for that: the stage's mean
                steady = (t["end"] - t["start"]) / steps[name]
            out[name] = {"steps": steps[name], "seconds": round(t["end"] - t["start"], 2),
                         "steady_step_ms": round(steady * 1000, 2), "full_steps": getattr(full, name).max_steps}
        return out

    class Timer(Callback):
        def __init__(self) -> None:
            self.stages: dict[str, dict] = {}

        def on_start(self, progress) -> None:
            self.stages[progress.stage] = {"start": time.perf_counter(), "marks": []}

        def on_step(self, progress) -> None:
            self.stages[progress.stage]["marks"].append((progress.step, time.perf_counter()))

        def on_end(self, progress) -> None:
            self.stages[progress.stage]["end"] = time.perf_counter()
            keep(figures(self.stages))

    model = str(work / "model")
    full = load_config(preset, [f"guide.sds.model.model={model}"])
    steps = E2E_STEPS if cuda else {"coarse": 6, "geometry": 3, "texture": 3}
    overrides = [f"guide.sds.model.model={model}", f"prompt.text={E2E_PROMPT}", "trainer.log_every=5",
                 "trainer.preview_every=0", "trainer.checkpoint_every=0",
                 *(f"{stage}.max_steps={n}" for stage, n in steps.items()),
                 *([] if turntable else ["export.turntable_frames=0"]),
                 *([] if cuda else ["trainer.device=cpu"])]
    config = load_config(preset, overrides)
    timer = Timer()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        generate(config, Path(run_dir) / "run", callbacks=[timer])
    wall = time.perf_counter() - start
    stages = figures(timer.stages)
    fixed = wall - sum(t["end"] - t["start"] for t in timer.stages.values())
    minutes = (fixed + sum(s["full_steps"] * s["steady_step_ms"] / 1000 for s in stages.values())) / 60
    return {
        "wall_seconds": round(wall, 1),
        "fixed_seconds": round(fixed, 1),
        "stages": stages,
        "extrapolated_full_minutes": round(minutes, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "turntable": turntable,
        "backends": sorted(set(backends)),
    }


# --------------------------------------------------------------------------------------------------------------------
# Reports


def markdown(report: dict) -> str:
    parts = report["parts"]
    env = parts.get("env", {})
    lines = [f"# GPU check ({report['mode']})", "",
             f"{env.get('gpu', 'no GPU')} · torch {env.get('torch')} (CUDA {env.get('torch_cuda')}) · "
             f"Python {env.get('python')} · nvcc: {env.get('nvcc')} · {report['started']} · {report['seconds']} s",
             "", "| part | status | seconds |", "| --- | --- | --- |"]
    lines += [f"| {name} | {p['status']} | {p.get('seconds', '')} |" for name, p in parts.items()]
    sds = parts.get("sds_step", {})
    for p in sds.get("presets", []):
        lines += ["", f"## Step times, `{p['preset']}` ({p['views_per_step']} view(s), {p['sds_resolution']}² SDS)",
                  "", "| what | ms | × floor | peak GiB | device busy ms |", "| --- | --- | --- | --- | --- |",
                  f"| UNet forward with CFG | {p['unet_cfg_ms']} | | | |",
                  f"| VAE encode forward + backward | {p['vae_encode_fwd_bwd_ms']} | | | |",
                  f"| diffusion floor | {p['floor_ms']} | 1.00 | | |"]
        lines += [f"| {name} step | failed: {s['error']} | | | |" if "error" in s else
                  f"| {name} step | {s['step_ms']} | {s['ratio_to_floor']} | {s['peak_gib'] or '–'} | "
                  f"{s.get('device_busy_ms') or '–'} |"
                  for name, s in p["stages"].items()]
    for preset, e in parts.get("e2e", {}).get("presets", {}).items():
        lines += ["", f"## End to end, `{preset}` (reduced steps, extrapolated)", "", *stage_table(e["stages"])]
        video = "" if e["turntable"] else ", no turntable"
        lines += ["", f"Fixed costs (model loading, surface extraction, export{video}): {e['fixed_seconds']} s. "
                  f"**Full preset: {e['extrapolated_full_minutes']} min** "
                  f"(previews and checkpoints excluded). Peak GPU memory: {e['peak_gib'] or '–'} GiB. "
                  f"Backends: {'; '.join(e['backends']) or 'as above (each is chosen and logged once per process)'}."]
    for preset, e in parts.get("e2e", {}).get("unfinished_presets", {}).items():
        lines += ["", f"## End to end, `{preset}`: stopped before its end (the stages it finished)", "",
                  *stage_table(e)]
    for preset, error in parts.get("e2e", {}).get("failed_presets", {}).items():
        lines += ["", f"## End to end, `{preset}`: failed", "", f"    {error}"]
    tests = parts.get("tests", {})
    if tests:
        lines += ["", f"## Tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                  f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped"]
        lines += [f"- {f}" for f in tests.get("failures", [])]
    for name, p in parts.items():
        if p["status"] in ("failed", "timeout"):
            lines += ["", f"## {name}: {p['status']}", "", "```", p.get("output_tail", p.get("error", "")), "```"]
    return "\n".join(lines) + "\n"


def stage_table(stages: dict[str, dict]) -> list[str]:
    """Markdown rows of an end-to-end run's stage figures."""
    return ["| stage | steps run | seconds | steady ms/step | full steps |", "| --- | --- | --- | --- | --- |",
            *(f"| {n} | {s['steps']} | {s['seconds']} | {s['steady_step_ms']} | {s['full_steps']} |"
              for n, s in stages.items())]


def summary(report: dict) -> str:
    parts = report["parts"]
    head = f"text3d GPU check: {report['mode']}, {report['seconds']} s"
    rows = [head] + [f"  {name:9s} {p['status']:8s} {p.get('seconds', '')}" for name, p in parts.items()]
    for p in parts.get("sds_step", {}).get("presets", []):
        ratios = ", ".join(f"{n} {s.get('ratio_to_floor', 'failed')}x" for n, s in p["stages"].items())
        rows.append(f"  {p['preset']}: floor {p['floor_ms']} ms; {ratios}")
    for preset, e in parts.get("e2e", {}).get("presets", {}).items():
        rows.append(f"  {preset}: {e['extrapolated_full_minutes']} min extrapolated, peak {e['peak_gib']} GiB")
    if "cuda" not in report["mode"] and report["mode"] != "gpu":
        rows.append("  no CUDA device: a rehearsal; GPU figures need a GPU")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------------------------
# Helpers


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    names = {"PIL": "pillow", "yaml": "pyyaml", "skimage": "scikit-image", "nvdiffrast": "diffrp-nvdiffrast",
             "fast_simplification": "fast-simplification", "imageio_ffmpeg": "imageio-ffmpeg",
             "importlib_metadata": "importlib-metadata", "huggingface_hub": "huggingface-hub"}
    try:
        return importlib.metadata.version(names.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return "present"


def _first_line_of(cmd: list[str], last: bool = False) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else None


def _junit_summary(paths: list[Path]) -> dict:
    total = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    for path in paths:
        if not path.exists():
            continue
        for case in ElementTree.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                total["failed" if bad.tag == "failure" else "errors"] += 1
                total["failures"].append(f"{name}: {(bad.get('message') or '').splitlines()[0][:200]}")
            elif case.find("skipped") is not None:
                total["skipped"] += 1
            else:
                total["passed"] += 1
    return total


PART_FUNCTIONS = {"env": part_env, "install": part_install, "model": part_model, "build": part_build,
                  "tests": part_tests, "sds_step": part_sds_step, "e2e": part_e2e}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and log.txt")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install missing packages from (offline)")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check (default 470)")
    parser.add_argument("--skip", nargs="+", default=[], choices=("model", "build", "tests", "sds_step", "e2e"),
                        metavar="PART", help="parts to leave out, e.g. --skip tests (to re-measure in less time); without model, no sds_step or e2e")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS, metavar="PRESET",
                        help=f"presets that sds_step and e2e measure, in order (default: {' '.join(PRESETS)})")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)  # a part's deadline (epoch seconds)
    args = parser.parse_args()
    if args.wheels is not None and not args.wheels.is_dir():
        parser.error(f"--wheels {args.wheels} is not a folder")
    if args.part is None:
        return orchestrate(args)
    result = PART_FUNCTIONS[args.part](args)
    (args.work / f"{args.part}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
