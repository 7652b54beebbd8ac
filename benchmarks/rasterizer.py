"""Rasterizer step time: rasterize + interpolate + antialias, forward and backward, on a 20k-triangle icosphere.

    python benchmarks/rasterizer.py [--resolutions 256 512] [--repeats 3] [--device cuda]

Prints one line per backend and resolution: milliseconds for the forward pass and for the backward pass (best of
``--repeats``, after one warm-up step). The torch twin runs everywhere; on CUDA the nvdiffrast backend runs too when it
imports and builds.
"""

from __future__ import annotations

import argparse
import time

import torch
import trimesh

from text3d.renderer.cameras import spherical_cameras
from text3d.renderer.rasterizer import _nvdiffrast_problem, antialias, interpolate, rasterize


def clip_positions(verts: torch.Tensor, resolution: int) -> torch.Tensor:
    """``verts: [V, 3]`` seen from a text3d camera 2.5 units away (the sphere fills most of the view): ``[1, V, 4]``."""
    one = torch.ones(1)
    cams = spherical_cameras(30 * one, 20 * one, 2.5 * one, 50 * one, resolution, resolution).to(verts.device)
    mvp = cams.projection() @ torch.linalg.inv(cams.c2w)
    return torch.cat([verts, torch.ones_like(verts[:, :1])], 1) @ mvp.transpose(1, 2)


def step_times(backend: str, verts: torch.Tensor, tri: torch.Tensor, resolution: int, repeats: int):
    """Best forward and backward seconds of one step, and the number of covered pixels."""
    pos = clip_positions(verts, resolution).detach().requires_grad_()
    colors = (verts * 0.5 + 0.5).requires_grad_()
    forward, backward = [], []
    for i in range(repeats + 1):
        sync(verts.device)
        t0 = time.perf_counter()
        rast, _ = rasterize(pos, tri, (resolution, resolution), backend=backend)
        image = antialias(interpolate(colors, rast, tri, backend=backend), rast, pos, tri, backend=backend)
        loss = image.square().mean()
        sync(verts.device)
        t1 = time.perf_counter()
        loss.backward()
        sync(verts.device)
        if i:  # the first step warms up allocators (and nvdiffrast's kernels)
            forward.append(t1 - t0)
            backward.append(time.perf_counter() - t1)
    return min(forward), min(backward), int((rast[..., 3] > 0).sum())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subdivisions", type=int, default=5, help="icosphere subdivisions (5: 20480 triangles)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    mesh = trimesh.creation.icosphere(subdivisions=args.subdivisions)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32, device=device)
    tri = torch.tensor(mesh.faces, dtype=torch.int32, device=device)
    backends = ["torch"]
    if device.type == "cuda":
        problem = _nvdiffrast_problem(device if device.index is not None else torch.device("cuda", 0))
        backends += ["nvdiffrast"] if problem is None else []
        print("nvdiffrast:", problem or "available")
    print(f"device={device} threads={torch.get_num_threads()} triangles={len(tri)} torch={torch.__version__}")
    for backend in backends:
        for res in args.resolutions:
            fwd, bwd, covered = step_times(backend, verts, tri, res, args.repeats)
            print(
                f"{backend:>10} {res}x{res}: forward {fwd * 1000:7.1f} ms, backward {bwd * 1000:7.1f} ms, "
                f"total {(fwd + bwd) * 1000:7.1f} ms ({covered} pixels covered, best of {args.repeats})"
            )


if __name__ == "__main__":
    main()
