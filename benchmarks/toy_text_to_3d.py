"""Text to 3D with the bundled toy model, judged without the model: shape and colour accuracy, minutes per asset.

    python benchmarks/toy_text_to_3d.py [--out DIR] [--prompts N] [--samples K] [KEY=VALUE ...]

1. The model's own images: K DDIM samples (50 steps, CFG --cfg) per prompt, judged by `judge_image` (nearest canonical
   renders by silhouette and shading; mean hue/saturation of the object's pixels).
2. Text to 3D: `text3d generate PROMPT --preset toy` for the first N of the 36 "a COLOUR SHAPE" prompts (ordered so
   that any N >= 6 covers every shape and every colour), each exported model.glb judged by `judge_glb` (Chamfer
   distance to each canonical primitive after centring and scaling, best over rotations about z; mean baked albedo).

Runs already finished under --out are judged again, not re-run, so an interrupted benchmark continues where it
stopped. Writes results.json, samples.png (a row of samples per prompt) and contact_sheet.png (one tile per asset,
with its verdict) to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from text3d.app.jobs import generate
from text3d.app.presets import TOY_PRESET, load_config
from text3d.app.run_dir import is_finished
from text3d.export.video import contact_sheet
from text3d.guide.models import ModelConfig, load_diffusion_model
from text3d.io import write_image, write_json, write_text
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


def generate_and_judge(color: str, shape: str, out: Path, overrides: list[str]) -> dict:
    config = load_config(TOY_PRESET, overrides, [("prompt.text", caption(color, shape))])
    run_dir = out / f"{color}-{shape}"
    seconds = None
    if not is_finished(run_dir):
        t0 = time.perf_counter()
        result = generate(config, run_dir, resume=(run_dir / "config.yaml").exists())
        if result.stopped:
            raise RuntimeError(f"{run_dir} stopped")
        seconds = time.perf_counter() - t0
        write_text(run_dir / "bench_seconds.txt", f"{seconds:.1f}\n")
    elif (run_dir / "bench_seconds.txt").exists():
        seconds = float((run_dir / "bench_seconds.txt").read_text())
    verdict = judge_glb(run_dir / "model.glb")
    return {
        "prompt": caption(color, shape),
        "shape": verdict["shape"],
        "color": verdict["color"],
        "shape_ok": verdict["shape"] == shape,
        "color_ok": verdict["color"] == color,
        "shape_distances": verdict["shape_distances"],
        "seconds": seconds,
        "run": str(run_dir),
    }


def tile(row: dict, size: int) -> np.ndarray:
    """The first view of a run's contact sheet with the prompt and the verdict written under it."""
    sheet = PIL.Image.open(Path(row["run"]) / "contact_sheet.png").convert("RGB")
    views = int(np.ceil(np.sqrt(8)))  # the toy preset's 8 orbit views tile 3 x 3
    first = sheet.crop((0, 0, sheet.width // views, sheet.height // views)).resize((size, size))
    canvas = PIL.Image.new("RGB", (size, size + 28), "white")
    canvas.paste(first, (0, 0))
    draw = PIL.ImageDraw.Draw(canvas)
    draw.text((4, size + 2), row["prompt"][2:], fill="black")
    wrong = [row[k] for k in ("color", "shape") if not row[f"{k}_ok"]]  # what the judge saw instead
    draw.text((4, size + 15), f"-> {' '.join(wrong)}" if wrong else "ok", fill=(200, 0, 0) if wrong else (0, 128, 0))
    return np.asarray(canvas)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "toy_text_to_3d")
    parser.add_argument("--prompts", type=int, default=36, help="how many of the 36 prompts to generate (default 36)")
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
    rows = []
    for color, shape in prompts()[: args.prompts]:
        row = generate_and_judge(color, shape, args.out, args.overrides)
        rows.append(row)
        took = "" if row["seconds"] is None else f"{row['seconds']:.0f} s"
        print(f"{row['prompt']:<20} -> {row['color']:<7} {row['shape']:<9} {took}", flush=True)
    if rows:
        timed = [r["seconds"] for r in rows if r["seconds"] is not None]
        results["assets"] = {
            "shape_accuracy": sum(r["shape_ok"] for r in rows) / len(rows),
            "color_accuracy": sum(r["color_ok"] for r in rows) / len(rows),
            "n": len(rows),
            "minutes_per_asset": round(sum(timed) / len(timed) / 60.0, 2) if timed else None,
            "rows": rows,
        }
        a = results["assets"]
        print(f"text to 3D, {a['n']} prompts: shape {a['shape_accuracy']:.1%}, colour {a['color_accuracy']:.1%}, "
              f"{a['minutes_per_asset']} min per asset")
        sheet = contact_sheet(np.stack([tile(r, 160) for r in rows]), columns=6)
        write_image(args.out / "contact_sheet.png", sheet)
        print(f"contact sheet: {args.out / 'contact_sheet.png'}")
    write_json(args.out / "results.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
