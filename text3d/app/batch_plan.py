"""Planning a batch: every prompt's config and run directory, checked before anything runs (no torch imported).

Each item's config: defaults <- preset <- ``--model`` and the prompt <- the batch's ``KEY=VALUE`` overrides <- the
line's ``seed``, ``negative`` and overrides. Runs go to ``<out_root>/<prompt-slug>-<seed>/``; a name already used by
an earlier item, or holding a run with a different config, gets ``-2``, ``-3``, ...: the same file and command always
map to the same directories, so a re-run skips finished runs and resumes unfinished ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from text3d.app.presets import load_config, prepare_prompt
from text3d.app.prompt_files import BatchItem, error_listing
from text3d.app.run_dir import holds_config, run_names
from text3d.app.schema import Text3DConfig
from text3d.config import to_yaml
from text3d.errors import UserError


@dataclass(frozen=True)
class PlannedRun:
    """An item with its resolved config and run directory."""

    index: int
    item: BatchItem
    config: Text3DConfig
    run_dir: Path


def plan_batch(
    items: Sequence[BatchItem],
    out_root: Path,
    preset: str | None,
    overrides: Sequence[str] = (),
    model: str | None = None,
    resume: bool = True,
    source: str = "prompts",
    errors: Sequence[tuple[int, str]] = (),
) -> list[PlannedRun]:
    """Resolve every item's config and run directory; problems are a :class:`UserError` before anything runs, which
    lists every bad line (with ``errors``, the lines that did not parse, see
    :func:`~text3d.app.prompt_files.parse_prompt_file`).

    Two items with the same resolved config are an error (``source``:line names both). Without ``resume``, a run
    directory that already holds a run is an error.
    """
    extra = [("guide.sds.model.model", model)] if model is not None else []
    load_config(preset, list(overrides), extra)  # a bad batch-wide option is reported once, not on every line
    plan: list[PlannedRun] = []
    bad = list(errors)
    seen: dict[str, int] = {}
    taken: set[str] = set()
    for index, item in enumerate(items):
        where = f"{source}:{item.line}"
        line_overrides = [*overrides, *_shortcut_overrides(item), *item.overrides]
        try:
            config = load_config(preset, line_overrides, [*extra, ("prompt.text", item.prompt)])
            config, _ = prepare_prompt(config)
        except UserError as e:
            bad.append((item.line, f"{where}: {e}"))
            continue
        key = to_yaml(config)
        if key in seen:
            bad.append((item.line, f"{where}: same prompt, seed and overrides as line {seen[key]} (give one a seed=N)"))
            continue
        seen[key] = item.line
        name = next(n for n in run_names(config) if n not in taken and _can_hold(out_root / n, config))
        taken.add(name)
        if not resume and (out_root / name / "config.yaml").exists():
            bad.append((item.line, f"{where}: {out_root / name} already holds a run; drop --no-resume to continue "
                                   "the batch"))
            continue
        plan.append(PlannedRun(index, item, config, out_root / name))
    if bad:
        raise UserError(error_listing(bad))
    return plan


def _shortcut_overrides(item: BatchItem) -> list[str]:
    """``seed``/``negative`` as overrides, so that they beat the batch-wide ``KEY=VALUE`` overrides."""
    out = [] if item.seed is None else [f"seed={item.seed}"]
    if item.negative is not None:
        # JSON-quoted: the loader reads a double-quoted YAML scalar, so the text arrives exactly as written.
        out.append(f"prompt.negative={json.dumps(item.negative, ensure_ascii=False)}")
    return out


def _can_hold(path: Path, config: Text3DConfig) -> bool:
    """True when ``path`` can hold this item's run: absent, without a run, or a run of the same config."""
    if not path.exists():
        return True
    return path.is_dir() and (not (path / "config.yaml").exists() or holds_config(path, config))
