"""Text to 3D with the bundled toy model, judged without the model: shape and colour accuracy, minutes per asset.

    python benchmarks/toy_text_to_3d.py [--out DIR] [--prompts N] [--shapes SHAPE ...] [--colors COLOUR ...]
                                        [--seeds S ...] [--samples K] [KEY=VALUE ...]

1. The model's own images: K DDIM samples (50 steps, CFG --cfg) per prompt, judged by `judge_image` (nearest canonical
   renders by silhouette and shading; mean hue/saturation of the object's pixels).
2. The coarse step against the diffusion floor: the mean wall time of a toy coarse training step and, inside it,
   of the model's classifier-free-guided forward (60 steps after 40 of warm-up), and their ratio.
3. Text to 3D: `text3d generate PROMPT --preset toy --seed S` for the first N of the 36 "a COLOUR SHAPE" prompts
   (ordered so that any N >= 6 covers every shape and every colour; --shapes and --colors keep some) and each
   seed, each exported model.glb judged by `judge_glb` (Chamfer distance to each canonical primitive after
   centring and scaling, best over rotations about z; mean baked albedo); a mesh that the run's metrics.json says
   fills the scene counts as a wrong shape ("fills-scene") whatever the judge says. A run that fails counts as a
   failure (its error is recorded) and the benchmark goes on.

Runs already finished under --out are judged again, not re-run, so an interrupted benchmark continues where it
stopped. Writes results.json, samples.png (a row of samples per prompt) and contact_sheet.png (one tile per asset,
with its verdict) to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from text3d.app.chain import STAGES, Handover
from text3d.app.jobs import generate, generation_context
from text3d.app.presets import TOY_PRESET, load_config
from text3d.app.run_dir import is_finished
from text3d.export.video import contact_sheet
from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.guide.sds import SDSGuide
from text3d.io import write_image, write_json, write_text
from text3d.stage.trainer import Trainer
from text3d.toy.bundled import TOY_MODEL_DIR
from text3d.toy.judge import judge_glb, judge_image
from text3d.toy.sample import sample_images
from text3d.toy.vocabulary import COLORS, SHAPES, caption

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CFG = 1.0


def prompts() -> list[tuple[str, str]]:
    """All 36 (colour, shape) pairs, each block of 6 a Latin square: every shape once and every colour once."""
    colors = list(COLORS)
    return [(colors[(i + k) % 6], SHAPES[i]) for k in range(6) for i in range(6)]


def judge_samples(per_prompt: int, guidance_scale: float, out: Path) -> dict:
    """Sample ``per_prompt`` images for each prompt, judge them, and write them to ``out`` (a row per prompt)."""
    model = load_diffusion_model(ModelConfig(model=str(TOY_MODEL_DIR), dtype="fp32"), "pixel", "cpu")
    rows, sheet, t0 = [], [], time.perf_counter()
    for color, shape in prompts():
        images = sample_images(model, [caption(color, shape)] * per_prompt, guidance_scale=guidance_scale, seed=0)
        sheet.append(images)
        verdicts = [judge_image(im) for im in images]
        rows.append({
            "prompt": caption(color, shape),
            "shape_ok": sum(v["shape"] == shape for v in verdicts),
            "color_ok": sum(v["color"] == color for v in verdicts),
            "n": per_prompt,
        })
    n = sum(r["n"] for r in rows)
    pixels = (torch.cat(sheet).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    write_image(out, contact_sheet(pixels, columns=per_prompt))
    return {
        "shape_accuracy": sum(r["shape_ok"] for r in rows) / n,
        "color_accuracy": sum(r["color_ok"] for r in rows) / n,
        "images": n,
        "guidance_scale": guidance_scale,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


def floor_ratio(overrides: list[str], warmup: int = 40, steps: int = 60) -> dict:
    """Mean ms of a toy coarse training step and of the guide's CFG model forward inside it, and their ratio."""
    config = load_config(TOY_PRESET, overrides, [("prompt.text", caption("red", "cube"))])
    ctx = generation_context(config)
    stage = STAGES[0].build(ctx, Handover())
    spent = [0.0]
    forward = SDSGuide.predict_noise

    def timed_forward(self, *args, **kwargs):
        start = time.perf_counter()
        result = forward(self, *args, **kwargs)
        spent[0] += time.perf_counter() - start
        return result

    SDSGuide.predict_noise = timed_forward
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(stage, config.trainer, ctx.accelerator, Path(run_dir))
            for i in range(warmup):
                trainer._step(i, None)
            spent[0], start = 0.0, time.perf_counter()
            for i in range(warmup, warmup + steps):
                trainer._step(i, None)
            step_ms = (time.perf_counter() - start) / steps * 1000
    finally:
        SDSGuide.predict_noise = forward
    floor_ms = spent[0] / steps * 1000
    return {"step_ms": round(step_ms, 1), "floor_ms": round(floor_ms, 1), "ratio": round(step_ms / floor_ms, 2),
            "backend": stage.field.encoding.backend}


def generate_and_judge(color: str, shape: str, seed: int, out: Path, overrides: list[str]) -> dict:
    config = load_config(TOY_PRESET, overrides, [("prompt.text", caption(color, shape)), ("seed", seed)])
    run_dir = out / f"{color}-{shape}-{seed}"
    row = {"prompt": caption(color, shape), "seed": seed, "run": str(run_dir), "seconds": None, "error": None}
    if not is_finished(run_dir):
        t0 = time.perf_counter()
        try:
            result = generate(config, run_dir, resume=(run_dir / "config.yaml").exists())
        except Exception as e:  # a failed run is a result of the benchmark, not its end
            return {**row, "error": f"{type(e).__name__}: {e}".splitlines()[0], "shape_ok": False, "color_ok": False,
                    "shape": "failed", "color": "failed"}
        if result.stopped:
            raise RuntimeError(f"{run_dir} stopped")
        row["seconds"] = time.perf_counter() - t0
        write_text(run_dir / "bench_seconds.txt", f"{row['seconds']:.1f}\n")
    elif (run_dir / "bench_seconds.txt").exists():
        row["seconds"] = float((run_dir / "bench_seconds.txt").read_text())
    verdict = judge_glb(run_dir / "model.glb")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The judge centres and scales the mesh, so a field that filled the scene can pass for a shape: the run's own
    # account of the mesh's span of the scene overrules it.
    fills = metrics["export"].get("fills_scene", False)
    return {
        **row,
        "shape": "fills-scene" if fills else verdict["shape"],
        "color": verdict["color"],
        "shape_ok": verdict["shape"] == shape and not fills,
        "color_ok": verdict["color"] == color,
        "shape_distances": verdict["shape_distances"],
        "judged_shape": verdict["shape"],
        "restarted": metrics["coarse"].get("restarted"),
    }


def tile(row: dict, size: int) -> np.ndarray:
    """The first view of a run's contact sheet (blank for a failed run) with the prompt, seed and verdict under it."""
    canvas = PIL.Image.new("RGB", (size, size + 28), "white")
    if row["error"] is None:
        sheet = PIL.Image.open(Path(row["run"]) / "contact_sheet.png").convert("RGB")
        views = int(np.ceil(np.sqrt(8)))  # the toy preset's 8 orbit views tile 3 x 3
        canvas.paste(sheet.crop((0, 0, sheet.width // views, sheet.height // views)).resize((size, size)), (0, 0))
    draw = PIL.ImageDraw.Draw(canvas)
    draw.text((4, size + 2), f"{row['prompt'][2:]} s{row['seed']}", fill="black")
    wrong = [row[k] for k in ("color", "shape") if not row[f"{k}_ok"]]  # what the judge saw instead
    draw.text((4, size + 15), f"-> {' '.join(wrong)}" if wrong else "ok", fill=(200, 0, 0) if wrong else (0, 128, 0))
    return np.asarray(canvas)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "toy_text_to_3d")
    parser.add_argument("--prompts", type=int, default=36, help="how many of the 36 prompts to generate (default 36)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), metavar="SHAPE",
                        help="only the prompts of these shapes, e.g. --shapes torus to try a fix on the tori first")
    parser.add_argument("--colors", nargs="+", choices=list(COLORS), default=list(COLORS), metavar="COLOUR",
                        help="only the prompts of these colours")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of each prompt (default 0 1 2)")
    parser.add_argument("--samples", type=int, default=8, help="model samples judged per prompt (0: skip)")
    parser.add_argument("--cfg", type=float, default=SAMPLE_CFG, help=f"guidance scale of the samples ({SAMPLE_CFG})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the toy preset")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} out={args.out}")
    results: dict = {}
    if args.samples > 0:
        s = judge_samples(args.samples, args.cfg, args.out / "samples.png")
        results["samples"] = s
        print(f"model samples (DDIM 50 steps, CFG {args.cfg:g}), {s['images']} images: shape "
              f"{s['shape_accuracy']:.1%}, colour {s['color_accuracy']:.1%} ({s['seconds']} s; {args.out / 'samples.png'})")
        for r in s["rows"]:
            if r["shape_ok"] < r["n"] or r["color_ok"] < r["n"]:
                print(f"  {r['prompt']:<20} shape {r['shape_ok']}/{r['n']}  colour {r['color_ok']}/{r['n']}")
    chosen = [(c, s) for c, s in prompts()[: args.prompts] if c in args.colors and s in args.shapes]
    if chosen:
        f = results["floor"] = floor_ratio(args.overrides)
        print(f"coarse step {f['step_ms']} ms, the model's CFG forward inside it {f['floor_ms']} ms: "
              f"{f['ratio']}x the diffusion floor (hash grid: {f['backend']})", flush=True)
    rows = []
    for color, shape in chosen:
        for seed in args.seeds:
            row = generate_and_judge(color, shape, seed, args.out, args.overrides)
            rows.append(row)
            took = "" if row["seconds"] is None else f"{row['seconds']:.0f} s"
            verdict = f"FAILED {row['error']}" if row["error"] else f"-> {row['color']:<7} {row['shape']:<11} {took}"
            if row.get("restarted"):
                verdict += " (coarse stage started over)"
            print(f"{row['prompt']:<20} seed {seed}  {verdict}", flush=True)
    if rows:
        timed = sorted(r["seconds"] for r in rows if r["seconds"] is not None)
        results["assets"] = {
            "shape_accuracy": sum(r["shape_ok"] for r in rows) / len(rows),
            "color_accuracy": sum(r["color_ok"] for r in rows) / len(rows),
            "failures": sum(r["error"] is not None for r in rows),
            "fills_scene": sum(r["shape"] == "fills-scene" for r in rows),
            "restarted": sum(bool(r.get("restarted")) for r in rows),
            "n": len(rows),
            "seeds": args.seeds,
            "median_minutes": round(statistics.median(timed) / 60.0, 2) if timed else None,
            "p90_minutes": round(timed[min(len(timed) - 1, int(0.9 * len(timed)))] / 60.0, 2) if timed else None,
            "rows": rows,
        }
        a = results["assets"]
        print(f"text to 3D, {a['n']} runs ({len(chosen)} prompts x seeds {' '.join(map(str, args.seeds))}): shape "
              f"{a['shape_accuracy']:.1%}, colour {a['color_accuracy']:.1%}, {a['failures']} failed, "
              f"{a['fills_scene']} filling the scene, {a['restarted']} started over; minutes per "
              f"asset: median {a['median_minutes']}, p90 {a['p90_minutes']}")
        sheet = contact_sheet(np.stack([tile(r, 160) for r in rows]), columns=6)
        write_image(args.out / "contact_sheet.png", sheet)
        print(f"contact sheet: {args.out / 'contact_sheet.png'}")
    write_json(args.out / "results.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
