"""Differentiable triangle rasterization: nvdiffrast's four primitives behind one API, with two backends.

``rasterize``, ``interpolate``, ``texture`` and ``antialias`` take and return nvdiffrast's tensor layouts. The backend
is ``"nvdiffrast"`` (CUDA only; ``nvdiffrast.torch``, e.g. from the ``diffrp-nvdiffrast`` package, imported lazily and
JIT-built on first use), ``"torch"`` (the pure-torch reference, any device) or ``"auto"`` (nvdiffrast for CUDA tensors
when it imports and builds, else torch, with a one-time warning when CUDA tensors fall back).

Conventions (both backends, exactly as nvdiffrast):

- ``pos: [B, V, 4]`` are clip-space vertices (OpenGL: a point is visible when ``-w <= x, y, z <= w``, so triangles
  are clipped against all six frustum planes, near and far included); ``tri: [F, 3]`` int32. No face culling.
- Pixel ``(row i, column j)`` of every ``[B, H, W, ...]`` image has its centre at NDC ``x = (2j + 1) / W - 1``,
  ``y = (2i + 1) / H - 1``: row 0 is the BOTTOM of the image (y up). :func:`flip_y` gives image row order (row 0 on
  top, as ``Cameras.rays()`` and image files use).
- ``rast[..., 0:2] = (u, v)``: perspective-correct barycentrics, the weights of the vertices ``tri[:, 0]`` and
  ``tri[:, 1]``; vertex ``tri[:, 2]`` has weight ``1 - u - v``. ``rast[..., 2]`` is z/w (NDC depth, clamped to
  [-1, 1]), ``rast[..., 3]`` is the triangle index + 1 as a float (0: no triangle; indices above 2^24 are bit-encoded
  as nvdiffrast does). Gradients reach ``pos`` through (u, v) and ``rast_db``, never through z/w or the index.
- ``rast_db[..., :] = (du/dX, du/dY, dv/dX, dv/dY)``, derivatives per pixel (X along a row, Y across rows).
- ``texture``: u runs along the texture's width, v along its height, and v = 0 is the texture's FIRST row
  ``tex[:, 0]``; texel ``(i, j)`` has its centre at ``uv = ((j + 0.5) / Wt, (i + 0.5) / Ht)``.

Where the backends may differ: nvdiffrast snaps vertices to a sub-pixel grid and applies a fill rule, so pixels whose
centre lies on or within a tiny fraction of a pixel of an edge can be covered differently; exact depth ties go to the
lower triangle index in the torch backend and are unspecified in nvdiffrast.
"""

from __future__ import annotations

import sys
from typing import Literal

import torch
from torch import Tensor

from text3d.backends import select_backend

Backend = Literal["auto", "torch", "nvdiffrast"]

# nvdiffrast stores triangle ids up to 2^24 as plain floats and larger ones as biased bit patterns.
_MAX_PLAIN_ID = 1 << 24
_ID_BIAS = 0x4A800000
# (triangle, pixel) candidates tested at once in the visibility pass: bounds its memory whatever the triangle sizes.
_PAIR_CHUNK = 1 << 20
_EMPTY_KEY = torch.iinfo(torch.int64).max
# Antialiasing accepts edge crossings up to 1/16 pixel outside the pixel pair, as nvdiffrast does.
_AA_EPS = 1.0 / 16.0

_nvdiffrast_problems: dict[torch.device, str | None] = {}
_cuda_contexts: dict[torch.device, object] = {}


def flip_y(image: Tensor) -> Tensor:
    """Flip ``image: [B, H, W, C]`` between the rasterizer's bottom-up rows and image (top-down) row order."""
    return image.flip(1)


# --------------------------------------------------------------------------------------------------------------------
# Public API


def rasterize(
    pos: Tensor, tri: Tensor, resolution: tuple[int, int], backend: Backend = "auto"
) -> tuple[Tensor, Tensor]:
    """Rasterize triangles ``tri: [F, 3]`` int32 of ``pos: [B, V, 4]`` clip-space float32 at ``resolution = (H, W)``.

    Returns ``rast: [B, H, W, 4]`` = (u, v, z/w, triangle index + 1) and ``rast_db: [B, H, W, 4]`` =
    (du/dX, du/dY, dv/dX, dv/dY); both are 0 where no triangle covers the pixel centre. The torch backend finds each
    pixel's nearest triangle without gradients, then recomputes its barycentrics from ``pos`` with autograd.
    """
    height, width = _check_resolution(resolution)
    _check_float("pos", pos, "[B, V, 4]", (3,), last=4)
    _check_tri(tri)
    _check_devices(pos=pos, tri=tri)
    _check_indices(tri, pos.shape[1])
    if _pick_backend(backend, pos.device) == "nvdiffrast":
        context = _cuda_contexts[pos.device]
        return _nvdiffrast().rasterize(context, pos.contiguous(), tri.contiguous(), (height, width))
    return _rasterize_torch(pos, tri, height, width)


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, backend: Backend = "auto") -> Tensor:
    """Interpolate vertex attributes ``attr: [V, C]`` or ``[B or 1, V, C]`` float32 over ``rast: [B, H, W, 4]``.

    Returns ``[B, H, W, C]``: ``u * a[tri[:, 0]] + v * a[tri[:, 1]] + (1 - u - v) * a[tri[:, 2]]`` of each pixel's
    triangle (perspective-correct, since u and v are), 0 where no triangle. Differentiable in ``attr`` and in (u, v).
    """
    _check_float("attr", attr, "[V, C] or [B, V, C]", (2, 3))
    _check_float("rast", rast, "[B, H, W, 4]", (4,), last=4)
    if attr.dim() == 3 and attr.shape[0] not in (1, rast.shape[0]):
        raise ValueError(f"attr: batch size {attr.shape[0]} must be 1 or rast's {rast.shape[0]}")
    _check_tri(tri)
    _check_devices(attr=attr, rast=rast, tri=tri)
    _check_indices(tri, attr.shape[-2])
    if _pick_backend(backend, attr.device) == "nvdiffrast":
        attr = attr if attr.dim() == 3 else attr[None]  # nvdiffrast broadcasts a batch of 1
        return _nvdiffrast().interpolate(attr.contiguous(), rast.contiguous(), tri.contiguous())[0]
    return _interpolate_torch(attr, rast, tri)


def texture(
    tex: Tensor,
    uv: Tensor,
    filter_mode: Literal["linear", "nearest"] = "linear",
    boundary_mode: Literal["clamp", "wrap"] = "clamp",
    backend: Backend = "auto",
) -> Tensor:
    """Sample ``tex: [B or 1, Ht, Wt, C]`` float32 at ``uv: [B, H, W, 2]`` float32; returns ``[B, H, W, C]``.

    ``filter_mode``: "linear" (bilinear; differentiable in ``tex`` and ``uv``) or "nearest" (differentiable in
    ``tex`` only). ``boundary_mode``: "clamp" (coordinates clamp to the centres of the border texels) or "wrap"
    (repeats; nvdiffrast's own default).
    """
    _check_float("tex", tex, "[B, Ht, Wt, C]", (4,))
    _check_float("uv", uv, "[B, H, W, 2]", (4,), last=2)
    if tex.shape[0] not in (1, uv.shape[0]):
        raise ValueError(f"tex: batch size {tex.shape[0]} must be 1 or uv's {uv.shape[0]}")
    if filter_mode not in ("linear", "nearest"):
        raise ValueError(f"filter_mode: expected 'linear' or 'nearest', got {filter_mode!r}")
    if boundary_mode not in ("clamp", "wrap"):
        raise ValueError(f"boundary_mode: expected 'clamp' or 'wrap', got {boundary_mode!r}")
    _check_devices(tex=tex, uv=uv)
    if _pick_backend(backend, tex.device) == "nvdiffrast":
        return _nvdiffrast().texture(
            tex.contiguous(), uv.contiguous(), filter_mode=filter_mode, boundary_mode=boundary_mode
        )
    return _texture_torch(tex, uv, filter_mode, boundary_mode)


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, backend: Backend = "auto") -> Tensor:
    """Analytic antialiasing of silhouette edges in ``color: [B, H, W, C]`` float32; returns ``[B, H, W, C]``.

    ``rast``, ``pos: [B, V, 4]`` and ``tri`` are those of the :func:`rasterize` call that produced ``color``.
    Pixels next to a silhouette edge blend with their neighbour across it by the edge's (differentiable) crossing
    position, which gives gradients to ``pos`` when silhouettes move; every other pixel is returned unchanged.
    """
    _check_float("color", color, "[B, H, W, C]", (4,))
    _check_float("rast", rast, "[B, H, W, 4]", (4,), last=4)
    _check_float("pos", pos, "[B, V, 4]", (3,), last=4)
    if rast.shape[:3] != color.shape[:3]:
        raise ValueError(f"rast: shape {list(rast.shape)} does not match color's [B, H, W] {list(color.shape[:3])}")
    if pos.shape[0] != color.shape[0]:
        raise ValueError(f"pos: batch size {pos.shape[0]} does not match color's {color.shape[0]}")
    _check_tri(tri)
    _check_devices(color=color, rast=rast, pos=pos, tri=tri)
    _check_indices(tri, pos.shape[1])
    if _pick_backend(backend, color.device) == "nvdiffrast":
        return _nvdiffrast().antialias(color.contiguous(), rast.contiguous(), pos.contiguous(), tri.contiguous())
    return _antialias_torch(color, rast, pos, tri)


# --------------------------------------------------------------------------------------------------------------------
# Torch backend (the reference; any float dtype, no input checks)


def _rasterize_torch(pos: Tensor, tri: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``pos: [B, V, 4]``, ``tri: [F, 3]`` -> ``rast, rast_db: [B, H, W, 4]`` (see :func:`rasterize`)."""
    face = _visible_faces(pos.detach(), tri.long(), height, width)
    return _pixel_barycentrics(pos, tri.long(), face)


@torch.no_grad()
def _visible_faces(pos: Tensor, tri: Tensor, height: int, width: int) -> Tensor:
    """Index + 1 of the nearest triangle covering each pixel centre, 0 where none: ``[B, H, W]`` int64.

    Every triangle is binned to the pixels of its screen bounding box (the whole screen when it crosses the camera
    plane w = 0); the (triangle, pixel) pairs are enumerated in chunks of ``_PAIR_CHUNK``, tested with homogeneous
    edge functions, and reduced per pixel by one ``scatter_reduce(amin)`` of a key packing (depth, triangle), so the
    nearest triangle wins and exact depth ties go to the lower index.
    """
    batch, n_faces = pos.shape[0], tri.shape[0]
    verts = pos[:, tri].reshape(batch * n_faces, 3, 4)  # [T, 3, 4], triangle t = b * F + f
    coef = _edge_coefficients(verts)  # [T, 5, 3]
    lo_x, hi_x, lo_y, hi_y = _pixel_bounds(verts, height, width)
    span = hi_x - lo_x + 1
    counts = span.clamp(min=0) * (hi_y - lo_y + 1).clamp(min=0)
    ends = counts.cumsum(0)
    total = int(ends[-1]) if n_faces else 0
    best = torch.full((batch * height * width,), _EMPTY_KEY, dtype=torch.int64, device=pos.device)
    for start in range(0, total, _PAIR_CHUNK):
        pair = torch.arange(start, min(start + _PAIR_CHUNK, total), device=pos.device)
        t = torch.searchsorted(ends, pair, right=True)
        local = pair - (ends[t] - counts[t])
        px = lo_x[t] + local % span[t]
        py = lo_y[t] + local // span[t]
        fx = (2 * px + 1).to(pos.dtype) / width - 1
        fy = (2 * py + 1).to(pos.dtype) / height - 1
        c = coef[t]  # [N, 5, 3]
        a0, a1, a2, zc, wc = (c[..., 0] + c[..., 1] * fx[:, None] + c[..., 2] * fy[:, None]).unbind(-1)
        area = a0 + a1 + a2
        inside = ((a0 >= 0) & (a1 >= 0) & (a2 >= 0) & (area > 0)) | ((a0 <= 0) & (a1 <= 0) & (a2 <= 0) & (area < 0))
        # The surface point must be in front of the camera (w > 0) and within the depth range |z| <= w.
        inside &= (wc * area > 0) & (zc.abs() <= wc.abs())
        keep = inside.nonzero().squeeze(1)
        depth = (zc[keep] / wc[keep]).float()
        key = (_ordered_bits(depth).long() << 32) | t[keep]
        pixel = (t[keep] // n_faces * height + py[keep]) * width + px[keep]
        best.scatter_reduce_(0, pixel, key, reduce="amin")
    hit = best != _EMPTY_KEY
    face = torch.where(hit, (best & 0xFFFFFFFF) % max(n_faces, 1) + 1, 0)
    return face.view(batch, height, width)


def _edge_coefficients(verts: Tensor) -> Tensor:
    """Linear functions of the pixel centre's NDC ``(fx, fy)`` for each triangle ``verts: [T, 3, 4]``: ``[T, 5, 3]``.

    Row i < 3 is the homogeneous edge function ``a_i = cross(p_j - f w_j, p_k - f w_k)`` (j, k the other two
    vertices), row 3 is ``sum z_i a_i`` and row 4 ``sum w_i a_i``; columns are the coefficients of (1, fx, fy).
    The perspective-correct barycentrics are ``a_i / sum a`` and the depth ``z/w = row 3 / row 4``.
    """
    x, y, z, w = verts.unbind(-1)  # [T, 3]
    xj, yj, wj = x.roll(-1, 1), y.roll(-1, 1), w.roll(-1, 1)
    xk, yk, wk = x.roll(-2, 1), y.roll(-2, 1), w.roll(-2, 1)
    edges = torch.stack([xj * yk - xk * yj, wk * yj - wj * yk, xk * wj - xj * wk], dim=-1)  # [T, 3, 3]
    depth = (z[..., None] * edges).sum(1, keepdim=True)
    weight = (w[..., None] * edges).sum(1, keepdim=True)
    return torch.cat([edges, depth, weight], dim=1)


def _pixel_bounds(verts: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inclusive pixel column and row ranges ``[T]`` int64 to test for each triangle; empty (hi < lo) when culled."""
    x, y, z, w = verts.unbind(-1)  # [T, 3]
    culled = (w <= 0).all(1)
    for c in (x, y, z):  # all three vertices beyond one frustum plane
        culled |= (c > w).all(1) | (c < -w).all(1)
    in_front = (w > 0).all(1)

    def bounds(ndc: Tensor, size: int) -> tuple[Tensor, Tensor]:
        # Pixel i's centre is at NDC (2i + 1) / size - 1; the margin keeps centres that rounding puts on the edge.
        lo = ((ndc.min(1).values + 1) * size - 1) / 2 - 0.01
        hi = ((ndc.max(1).values + 1) * size - 1) / 2 + 0.01
        lo = torch.where(in_front, lo.ceil(), 0).clamp(0, size)
        hi = torch.where(in_front, hi.floor(), size - 1).clamp(-1, size - 1)
        return lo.long(), torch.where(culled, -1, hi.long())

    lo_x, hi_x = bounds(x / w, width)
    lo_y, hi_y = bounds(y / w, height)
    return lo_x, hi_x, lo_y, hi_y


def _ordered_bits(value: Tensor) -> Tensor:
    """float32 ``value`` -> int32 with the same order (negative floats have their magnitude bits flipped)."""
    bits = value.view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _pixel_barycentrics(pos: Tensor, tri: Tensor, face: Tensor) -> tuple[Tensor, Tensor]:
    """``rast, rast_db: [B, H, W, 4]`` for the triangles ``face: [B, H, W]`` (index + 1), differentiable in ``pos``."""
    batch, height, width = face.shape
    b, py, px = face.nonzero(as_tuple=True)
    f = face[b, py, px] - 1
    x, y, z, w = pos[b[:, None], tri[f]].unbind(-1)  # [N, 3] each
    fx = ((2 * px + 1).to(pos.dtype) / width - 1)[:, None]
    fy = ((2 * py + 1).to(pos.dtype) / height - 1)[:, None]
    xr, yr = x - fx * w, y - fy * w
    a = xr.roll(-1, 1) * yr.roll(-2, 1) - yr.roll(-1, 1) * xr.roll(-2, 1)  # [N, 3] edge functions
    area = a.sum(1, keepdim=True)
    bary = a[:, :2] / area
    # Clamped to [0, 1] like nvdiffrast's output, with the unclamped gradient like its backward pass.
    bary = bary + (bary.clamp(0.0, 1.0) - bary).detach()
    depth = ((z * a).sum(1) / (w * a).sum(1)).clamp(-1.0, 1.0).detach()  # nvdiffrast gives z/w no gradient
    # d(u, v)/d(pixel): the edge functions are linear in (fx, fy) and fx moves by 2 / W per pixel.
    da_dx = w.roll(-2, 1) * y.roll(-1, 1) - w.roll(-1, 1) * y.roll(-2, 1)
    da_dy = x.roll(-2, 1) * w.roll(-1, 1) - x.roll(-1, 1) * w.roll(-2, 1)
    d_dx = (da_dx[:, :2] - bary * da_dx.sum(1, keepdim=True)) / area * (2.0 / width)  # (du/dX, dv/dX)
    d_dy = (da_dy[:, :2] - bary * da_dy.sum(1, keepdim=True)) / area * (2.0 / height)
    ids = _id_to_float(f + 1).to(pos.dtype)
    values = torch.cat([bary, depth[:, None], ids[:, None]], dim=1)
    derivs = torch.stack([d_dx[:, 0], d_dy[:, 0], d_dx[:, 1], d_dy[:, 1]], dim=1)
    flat = (b * height + py) * width + px
    shape = (batch, height, width, 4)
    rast = pos.new_zeros(batch * height * width, 4).index_copy(0, flat, values).view(shape)
    rast_db = pos.new_zeros(batch * height * width, 4).index_copy(0, flat, derivs).view(shape)
    return rast, rast_db


def _interpolate_torch(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """``attr: [V, C] | [B or 1, V, C]`` over ``rast: [B, H, W, 4]`` -> ``[B, H, W, C]`` (see :func:`interpolate`)."""
    if tri.shape[0] == 0:  # no triangle to hit, nor a row of tri to gather
        return attr.new_zeros(*rast.shape[:3], attr.shape[-1])
    face = _float_to_id(rast[..., 3].detach())
    hit = (face > 0) & (face <= tri.shape[0])  # like nvdiffrast, ids out of range count as empty
    corners = tri.long()[torch.where(hit, face - 1, 0)]  # [B, H, W, 3]
    u, v = rast[..., 0], rast[..., 1]
    weights = torch.stack([u, v, 1.0 - u - v], dim=-1) * hit[..., None]
    if attr.dim() == 2 or attr.shape[0] == 1:
        values = attr.reshape(attr.shape[-2:])[corners]
    else:
        values = attr[torch.arange(attr.shape[0], device=attr.device).view(-1, 1, 1, 1), corners]
    return (weights[..., None] * values).sum(-2)  # values: [B, H, W, 3, C]


def _texture_torch(tex: Tensor, uv: Tensor, filter_mode: str, boundary_mode: str) -> Tensor:
    """``tex: [B or 1, Ht, Wt, C]`` at ``uv: [B, H, W, 2]`` -> ``[B, H, W, C]`` (see :func:`texture`)."""
    tex_batch, tex_h, tex_w, channels = tex.shape
    u, v = uv[..., 0], uv[..., 1]
    if boundary_mode == "wrap":
        u, v = u - u.detach().floor(), v - v.detach().floor()
    rows = tex.reshape(-1, channels)
    base = torch.arange(uv.shape[0], device=uv.device).view(-1, 1, 1) * (tex_h * tex_w if tex_batch > 1 else 0)

    def fetch(ix: Tensor, iy: Tensor) -> Tensor:  # texel indices [B, H, W] -> [B, H, W, C]
        return rows[base + iy * tex_w + ix]

    if filter_mode == "nearest":
        ix = (u.detach() * tex_w).floor().long().clamp(0, tex_w - 1)
        iy = (v.detach() * tex_h).floor().long().clamp(0, tex_h - 1)
        return fetch(ix, iy)
    x, y = u * tex_w - 0.5, v * tex_h - 0.5  # texel centres at integers
    if boundary_mode == "clamp":
        x, y = x.clamp(0, tex_w - 1), y.clamp(0, tex_h - 1)
    x0, y0 = x.detach().floor(), y.detach().floor()
    tx, ty = (x - x0)[..., None], (y - y0)[..., None]
    ix0, iy0 = x0.long(), y0.long()
    if boundary_mode == "wrap":
        ix0, iy0, ix1, iy1 = ix0 % tex_w, iy0 % tex_h, (ix0 + 1) % tex_w, (iy0 + 1) % tex_h
    else:
        ix1, iy1 = (ix0 + 1).clamp(max=tex_w - 1), (iy0 + 1).clamp(max=tex_h - 1)
    row0 = fetch(ix0, iy0) * (1 - tx) + fetch(ix1, iy0) * tx
    row1 = fetch(ix0, iy1) * (1 - tx) + fetch(ix1, iy1) * tx
    return row0 * (1 - ty) + row1 * ty


def _antialias_torch(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor) -> Tensor:
    """Edge antialiasing of ``color: [B, H, W, C]`` (see :func:`antialias`): nvdiffrast's method, in torch.

    For every pair of horizontal or vertical neighbours whose triangle ids differ:

    1. the front triangle is the covered pixel's (the nearer by z/w when both are covered; ties: the second pixel's);
    2. of its edges that cross the line through both pixel centres, the one crossing farthest towards the other pixel
       is kept if it is a silhouette (no triangle across it, or the one across lies on the same side of it on
       screen, i.e. folds behind it) and runs more across that line than along it;
    3. with ``d`` the crossing's distance from the front pixel's centre towards the other one (accepted 1/16 px
       outside [0, 1], then clamped), the front triangle covers ``d - 0.5`` of the other pixel when ``d > 0.5``:
       that pixel moves towards the front pixel's colour by ``d - 0.5``; when ``d < 0.5`` the front pixel is
       uncovered by ``0.5 - d`` and moves towards the other pixel's colour by that much.

    Blends reaching a pixel from several pairs add up. ``d`` comes from ``pos`` through autograd, so moving a
    silhouette edge gives gradients to its two vertices (none when the blend saturates, at d = 0 or 1).
    """
    batch, height, width, channels = color.shape
    face = _float_to_id(rast[..., 3].detach()).view(-1)
    depth = rast[..., 2].detach().reshape(-1)
    pixel = torch.arange(batch * height * width, device=color.device).view(batch, height, width)
    right, up = pixel[:, :, :-1].reshape(-1), pixel[:, :-1, :].reshape(-1)
    right, up = right[face[right] != face[right + 1]], up[face[up] != face[up + width]]
    vertical = torch.cat([torch.zeros_like(right, dtype=torch.bool), torch.ones_like(up, dtype=torch.bool)])
    p0 = torch.cat([right, up])
    p1 = p0 + torch.where(vertical, width, 1)
    f0, f1 = face[p0], face[p1]
    front0 = (f0 > 0) & ((f1 == 0) | (depth[p0] < depth[p1]))  # ties go to pixel 1, as in nvdiffrast
    sign = torch.where(front0, 1.0, -1.0).to(pos.dtype)  # direction from the front pixel to the other one
    ref = torch.where(front0, p0, p1)
    f = torch.where(front0, f0, f1) - 1
    tri = tri.long()
    corners = torch.cat([tri[f], _wing_vertices(tri, pos.shape[1])[f]], dim=1)  # [N, 6]
    verts = pos[(ref // (height * width))[:, None], corners]  # [N, 6, 4]
    # Pixel-space positions relative to the front pixel's centre.
    sx = (verts[..., 0] / verts[..., 3] + 1) * (width / 2) - (ref % width)[:, None] - 0.5
    sy = (verts[..., 1] / verts[..., 3] + 1) * (height / 2) - (ref // width % height)[:, None] - 0.5
    x, y, wing_x, wing_y = sx[:, :3], sy[:, :3], sx[:, 3:], sy[:, 3:]

    def rolled(t: Tensor) -> tuple[Tensor, Tensor]:  # the two endpoints of edge i (opposite corner i)
        return t.roll(-1, 1), t.roll(-2, 1)

    (xj, xk), (yj, yk) = rolled(x), rolled(y)
    own = ((xj - x) * (yk - y) - (xk - x) * (yj - y))[:, :1]  # the triangle's signed area
    wing = (xj - wing_x) * (yk - wing_y) - (xk - wing_x) * (yj - wing_y)  # edge i with its wing vertex
    silhouette = torch.signbit(wing) == torch.signbit(own)
    # Work along the pair's axis: swap x and y for vertical pairs.
    swap = vertical[:, None]
    xj, yj = torch.where(swap, yj, xj), torch.where(swap, xj, yj)
    xk, yk = torch.where(swap, yk, xk), torch.where(swap, xk, yk)
    dx, dy = xk - xj, yk - yj
    crosses = (torch.signbit(yj) != torch.signbit(yk)) & (dy != 0)
    crossing = (xj * yk - yj * xk) / torch.where(crosses, dy, 1.0)  # where edge i meets the pair's axis
    dist = torch.where(crosses, sign[:, None] * crossing, -torch.inf)
    dist, edge = dist.max(1)
    usable = (silhouette & (dy.abs() >= dx.abs())).gather(1, edge[:, None]).squeeze(1)
    ok = usable & (dist > -_AA_EPS) & (dist < 1 + _AA_EPS)
    dist = dist[ok]
    # A saturated blend (crossing at or past a pixel centre) gives no position gradient, as in nvdiffrast.
    dist = torch.where((dist > 0) & (dist < 1), dist, dist.detach().clamp(0.0, 1.0))
    alpha = sign[ok] * (0.5 - dist)
    flat = color.reshape(-1, channels)
    q0, q1 = p0[ok], p1[ok]
    delta = alpha[:, None].to(color.dtype) * (flat[q1] - flat[q0])
    return flat.index_add(0, torch.where(alpha > 0, q0, q1), delta).view_as(color)


def _wing_vertices(tri: Tensor, n_vertices: int) -> Tensor:
    """``[F, 3]``: for edge i of each triangle (opposite corner i), the far vertex of the triangle across it.

    A boundary edge gets the triangle's own corner i, which makes it a silhouette; a non-manifold edge is paired
    with one of its other triangles.
    """
    j, k = tri.roll(-1, 1), tri.roll(-2, 1)
    key = (torch.minimum(j, k) * n_vertices + torch.maximum(j, k)).reshape(-1)  # entry 3f + i: edge i of face f
    order = key.argsort(stable=True)
    same = key[order][1:] == key[order][:-1]
    none = same.new_zeros(1)
    index = torch.arange(key.numel(), device=tri.device)
    # In sorted order, an edge's entries are adjacent: pair each with the next one, else with the previous one.
    mate = torch.where(torch.cat([same, none]), index + 1, torch.where(torch.cat([none, same]), index - 1, index))
    partner = torch.empty_like(order)
    partner[order] = order[mate]
    return tri.reshape(-1)[partner].view(-1, 3)


def _id_to_float(ids: Tensor) -> Tensor:
    """Triangle ids (int64) -> float32 as nvdiffrast stores them in ``rast[..., 3]``."""
    biased = (ids.clamp(min=_MAX_PLAIN_ID) + _ID_BIAS).int().view(torch.float32)
    return torch.where(ids <= _MAX_PLAIN_ID, ids.float(), biased)


def _float_to_id(values: Tensor) -> Tensor:
    """Inverse of :func:`_id_to_float`: ``rast[..., 3]`` -> int64 ids."""
    biased = values.float().contiguous().view(torch.int32).long() - _ID_BIAS
    return torch.where(values <= _MAX_PLAIN_ID, values.long(), biased)


# --------------------------------------------------------------------------------------------------------------------
# Input checks and backend choice


def _check_float(name: str, t: object, shape: str, ndims: tuple[int, ...], last: int | None = None) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise ValueError(f"{name}: expected dtype torch.float32, got {t.dtype}")
    if t.dim() not in ndims or (last is not None and t.shape[-1] != last):
        raise ValueError(f"{name}: expected shape {shape}, got {list(t.shape)}")


def _check_tri(tri: object) -> None:
    if not isinstance(tri, Tensor):
        raise ValueError(f"tri: expected a torch.Tensor, got {type(tri).__name__}")
    if tri.dtype != torch.int32:
        raise ValueError(f"tri: expected dtype torch.int32, got {tri.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri: expected shape [F, 3], got {list(tri.shape)}")


def _check_indices(tri: Tensor, n_vertices: int) -> None:
    if tri.numel():
        lo, hi = int(tri.min()), int(tri.max())
        if lo < 0 or hi >= n_vertices:
            raise ValueError(f"tri: vertex indices must be in [0, {n_vertices}), got [{lo}, {hi}]")


def _check_resolution(resolution: object) -> tuple[int, int]:
    ok = isinstance(resolution, (tuple, list)) and len(resolution) == 2
    if not ok or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in resolution):
        raise ValueError(f"resolution: expected (height, width), two positive ints, got {resolution!r}")
    return resolution[0], resolution[1]


def _check_devices(**tensors: Tensor) -> None:
    (first, ref), *rest = tensors.items()
    for name, t in rest:
        if t.device != ref.device:
            raise ValueError(f"{name}: is on {t.device}, but {first} is on {ref.device}")


def _pick_backend(backend: str, device: torch.device) -> str:
    # Through a lambda, so that the probe is looked up at call time (tests replace it).
    return select_backend("rasterizer", backend, device, {"nvdiffrast": lambda d: _nvdiffrast_problem(d)})


def _nvdiffrast_problem(device: torch.device) -> str | None:
    """Why nvdiffrast cannot run on CUDA ``device`` (None if it can); imports and JIT-builds it once per device."""
    if device not in _nvdiffrast_problems:
        try:
            _cuda_contexts[device] = _nvdiffrast_context(device)
            _nvdiffrast_problems[device] = None
        except Exception as exc:  # not installed, or its first-use build failed (no compiler, ...)
            _nvdiffrast_problems[device] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return _nvdiffrast_problems[device]


def _nvdiffrast_context(device: torch.device):
    """nvdiffrast's CUDA rasterizer context on ``device``; its first call JIT-builds nvdiffrast's plugin."""
    dr = _nvdiffrast()
    try:
        return dr.RasterizeCudaContext(device=device)
    except ModuleNotFoundError as exc:
        # nvdiffrast 0.3.3 builds its plugin with torch.utils.cpp_extension.load, then imports it by name; torch 2.11
        # loads the module without registering it, so that import fails. The build is done: register it and retry.
        if not (exc.name or "").startswith("nvdiffrast_plugin"):
            raise
        from torch.utils import cpp_extension

        folder = cpp_extension._get_build_directory(exc.name, False)
        sys.modules[exc.name] = cpp_extension._import_module_from_library(exc.name, folder, True)
        return dr.RasterizeCudaContext(device=device)


def _nvdiffrast():
    import nvdiffrast.torch as dr

    return dr
