"""The one rule that picks an optional accelerated backend: text3d's CUDA and CPU kernels, tiny-cuda-nn, nvdiffrast.

Every component with accelerated backends (hash grid, volume compositing, rasterizer) asks :func:`select_backend`
with its candidates in order of preference, those for CUDA devices and those for the CPU; the pure-torch
implementation is the reference and runs anywhere.

- ``"torch"`` always gives torch.
- A backend asked for by name must run: on a device of the other kind, or when its probe reports a problem (not
  installed, failed to build), :class:`~text3d.errors.BackendUnavailable` says why in one line.
- ``"auto"`` gives the first candidate for the device's kind whose probe reports no problem, else torch. It logs its
  choice once per component and device, and when it has to fall back to torch it warns once, naming each candidate's
  problem.

A probe answers why its backend cannot run on a device (``None`` when it can); it may be slow the first time (an
import, a build) and must cache its answer.
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
    what: str, requested: str, device: torch.device | str | None, candidates: Mapping[str, Probe],
    cpu_candidates: Mapping[str, Probe] | None = None,
) -> str:
    """The backend that ``what`` (e.g. "hash grid") runs on ``device`` with: "torch" or a key of ``candidates``
    (for CUDA devices) or of ``cpu_candidates`` (for the CPU).

    ``requested`` is "auto", "torch" or a candidate's key (their order is the order of preference).
    """
    cpu_candidates = cpu_candidates or {}
    names = ("auto", "torch", *candidates, *cpu_candidates)
    if requested not in names:
        raise ValueError(f"{what}: backend must be one of {', '.join(names)}, got {requested!r}")
    if requested == "torch":
        return "torch"
    device = torch.device(device if device is not None else "cpu")
    pool = candidates if device.type == "cuda" else cpu_candidates if device.type == "cpu" else {}
    if requested != "auto":
        if requested not in pool:
            kind = "a CUDA device" if requested in candidates else "the CPU"
            raise BackendUnavailable(f"{what}: backend '{requested}' needs {kind}, not {device} "
                                     "(use backend 'auto' or 'torch')")
        problem = pool[requested](device)
        if problem is not None:
            raise BackendUnavailable(f"{what}: {requested} backend unavailable ({problem}); use backend 'auto' or "
                                     "'torch'")
        _report_once(what, requested, device, f"{what} on {device}: {requested} backend")
        return requested
    problems = []
    for name, probe in pool.items():
        problem = probe(device)
        if problem is None:
            _report_once(what, name, device, f"{what} on {device}: {name} backend")
            return name
        problems.append(f"{name} backend unavailable ({problem})")
    key = (what, "torch", device)
    if problems and key not in _reported:
        _reported.add(key)
        warnings.warn(f"{what}: {'; '.join(problems)}; using the torch backend", stacklevel=3)
    return "torch"


def _report_once(what: str, name: str, device: torch.device, message: str) -> None:
    if (what, name, device) not in _reported:
        _reported.add((what, name, device))
        log.info(message)
