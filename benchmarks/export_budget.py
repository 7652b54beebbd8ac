"""Re-export one finished run at several face budgets; print faces, test PSNR, Chamfer and the GLB's sizes.

    python benchmarks/export_budget.py RUN_DIR [--max-faces 100000 50000 20000 10000] [--compress meshopt ...]

Each budget re-exports a copy of RUN_DIR (`text3d export COPY export.texture.max_faces=N`, no turntable); RUN_DIR
itself is not changed. A reconstruction run (`python benchmarks/reconstruct.py --out DIR`) is scored on its test
views. Each --compress entry (e.g. `meshopt`, `draco`, `meshopt,webp`) makes a compressed copy of each budget's
model.glb with gltf-transform, which must be on PATH (npm install -g @gltf-transform/cli@4).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from text3d.cli import main as text3d
from text3d.export.compress import check_compression, compress_glb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--max-faces", type=int, nargs="+", default=[100_000, 50_000, 20_000, 10_000])
    parser.add_argument("--compress", nargs="*", default=[], help="e.g. meshopt draco meshopt,webp")
    args = parser.parse_args()
    codecs = [tuple(c.split(",")) for c in args.compress]
    for codec in codecs:
        check_compression(codec)
    rows = []
    with tempfile.TemporaryDirectory(prefix="text3d-budget-") as tmp:
        for budget in args.max_faces:
            run = Path(tmp) / f"run-{budget}"
            shutil.copytree(args.run_dir, run, ignore=shutil.ignore_patterns(".lock", "previews"))
            start = time.perf_counter()
            if text3d(["export", str(run), f"export.texture.max_faces={budget}", "export.turntable_frames=0"]) != 0:
                return 1
            seconds = time.perf_counter() - start
            e = json.loads((run / "metrics.json").read_text())["export"]
            row = {"max_faces": budget, "faces": e["faces"], "export_s": round(seconds, 1), "psnr": e.get("psnr"),
                   "chamfer_pct": e.get("chamfer_pct"), "model.glb KB": (run / "model.glb").stat().st_size / 1e3}
            for codec in codecs:
                start = time.perf_counter()
                copy = compress_glb(run / "model.glb", codec)
                row[f"{copy.name} KB"] = copy.stat().st_size / 1e3
                row[f"{'+'.join(codec)} s"] = round(time.perf_counter() - start, 1)
            rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(_cell(row.get(k)) for k in columns))
    return 0


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
