"""The one rule that picks an optional accelerated backend: text3d's CUDA kernels, tiny-cuda-nn, nvdiffrast.

Every component with accelerated backends (hash grid, volume compositing, rasterizer) asks :func:`select_backend`
with its candidates in order of preference; the pure-torch implementation is the reference and runs anywhere.

- ``"torch"`` always gives torch.
- A backend asked for by name must run: on a device that is not CUDA, or when its probe reports a problem (not
  installed, failed to build), :class:`~text3d.errors.BackendUnavailable` says why in one line.
- ``"auto"`` gives torch off CUDA; on CUDA the first candidate whose probe reports no problem. It logs its choice once
  per component and device, and when it has to fall back to torch it warns once, naming each candidate's problem.

A probe answers why its backend cannot run on a CUDA device (``None`` when it can); it may be slow the first time
(an import, a JIT build) and must cache its answer.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping

import torch

from text3d.errors import BackendUnavailable

log = logging.getLogger(__name__)

Probe = Callable[[torch.device], "str | None"]

_reported: set[tuple[str, str, torch.device]] = set()


def select_backend(
    what: str, requested: str, device: torch.device | str | None, candidates: Mapping[str, Probe]
) -> str:
    """The backend that ``what`` (e.g. "hash grid") runs on ``device`` with: "torch" or a key of ``candidates``.

    ``requested`` is "auto", "torch" or a key of ``candidates`` (their order is the order of preference).
    """
    names = ("auto", "torch", *candidates)
    if requested not in names:
        raise ValueError(f"{what}: backend must be one of {', '.join(names)}, got {requested!r}")
    if requested == "torch":
        return "torch"
    device = torch.device(device if device is not None else "cpu")
    if requested != "auto":
        if device.type != "cuda":
            raise BackendUnavailable(f"{what}: backend '{requested}' needs a CUDA device, not {device} "
                                     "(use backend 'auto' or 'torch')")
        problem = candidates[requested](device)
        if problem is not None:
            raise BackendUnavailable(f"{what}: {requested} backend unavailable ({problem}); use backend 'auto' or "
                                     "'torch'")
        _report_once(what, requested, device, f"{what} on {device}: {requested} backend")
        return requested
    if device.type != "cuda":
        return "torch"
    problems = []
    for name, probe in candidates.items():
        problem = probe(device)
        if problem is None:
            _report_once(what, name, device, f"{what} on {device}: {name} backend")
            return name
        problems.append(f"{name} backend unavailable ({problem})")
    key = (what, "torch", device)
    if key not in _reported:
        _reported.add(key)
        warnings.warn(f"{what}: {'; '.join(problems)}; using the torch backend", stacklevel=3)
    return "torch"


def _report_once(what: str, name: str, device: torch.device, message: str) -> None:
    if (what, name, device) not in _reported:
        _reported.add((what, name, device))
        log.info(message)
