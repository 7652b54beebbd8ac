"""Presets and config assembly: which YAML a run starts from, the run's config built in layers, and the checks a
config gets before anything heavy is imported (this module imports no torch).

Presets ship inside the package as ``text3d.presets``, which setup.py maps onto the top-level ``configs/`` folder
(the one source of truth); any other YAML file is given by its path. A config is built from the defaults <- a
preset <- command-line options (the prompt, ``--model``, ``--seed``, the dataset) <- ``KEY=VALUE`` overrides.
Which preset a text-to-3D run gets when none is named is decided here, once: Stable Diffusion with CUDA or a
``--model``, else the bundled toy model that runs on a CPU.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from text3d.app.schema import Text3DConfig
from text3d.config import Layer, build, load_yaml, resolve_preset, to_dict
from text3d.errors import UserError
from text3d.prompt.config import clean_prompt
from text3d.resources import shipped_folder
from text3d.toy.bundled import check_toy_prompt, is_toy_model

TOY_PRESET = "toy"
"""The bundled toy text-to-image model on a CPU (configs/toy.yaml)."""
GPU_PRESET = "dreamfusion-sd"
"""Text to 3D with Stable Diffusion: the default of ``generate`` and ``batch`` with CUDA or ``--model``."""
INTERACTIVE_GPU_PRESET = "preview"
"""The web UI's first choice with CUDA or ``--model``: a quicker look at a prompt."""


def preset_dir() -> Path:
    """The folder of the shipped presets."""
    return shipped_folder("text3d.presets", "configs", f"{TOY_PRESET}.yaml")


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    """A shipped preset by name, or a YAML file by path; a one-line UserError names the presets otherwise."""
    return resolve_preset(name_or_path, [preset_dir()])


def load_config(
    preset: str | Path | None, overrides: Sequence[str] = (), options: Iterable[tuple[str, object]] = ()
) -> Text3DConfig:
    """Defaults <- ``preset`` <- ``options`` (dotted key, value: what command-line options set) <- ``overrides``."""
    layers = [load_yaml(preset_path(preset))] if preset else []
    options = list(options)
    if options:
        layers.append(Layer(_nest(options), source="command line"))
    return build(Text3DConfig, layers, list(overrides))


def with_export_overrides(config: Text3DConfig, overrides: Sequence[str]) -> Text3DConfig:
    """``config`` with ``export.KEY=VALUE`` overrides applied; any other key is a UserError (the stages' settings
    are fixed by their checkpoints)."""
    for item in overrides:
        if not item.partition("=")[0].strip().startswith("export."):
            raise UserError(f"export: only export.* settings can change on re-export, not '{item}'")
    return build(Text3DConfig, [Layer(to_dict(config), source="config.yaml")], list(overrides)) if overrides else config


def generation_preset(preset: str | None, model: str | None, interactive: bool = False) -> tuple[str, str | None]:
    """The preset of a text-to-3D run, and a one-line note for the user when the choice is not obvious.

    ``preset`` when one is named; else, with CUDA or a ``model``, :data:`GPU_PRESET` (the web UI, ``interactive``:
    :data:`INTERACTIVE_GPU_PRESET`); else :data:`TOY_PRESET`, which runs on a CPU in minutes.
    """
    if preset is not None:
        return preset, None
    gpu = INTERACTIVE_GPU_PRESET if interactive else GPU_PRESET
    if model is not None or cuda_available():
        return gpu, None
    note = (f'no CUDA device: using the bundled toy model (--preset {TOY_PRESET}; prompts "a COLOUR SHAPE"); '
            f"--preset {gpu} runs Stable Diffusion")
    return TOY_PRESET, note


def prepare_prompt(config: Text3DConfig) -> tuple[Text3DConfig, str | None]:
    """The config a text-to-3D run uses, and a one-line note when its prompt was reworded.

    A prompt the run cannot use is a :class:`UserError`: empty, or outside the vocabulary of the bundled toy model
    when that is the guide. For the toy model a person's wording ("An orange pyramid.") becomes the caption form it
    was trained on ("a orange pyramid"), and the note says so.
    """
    clean_prompt(config.prompt.text)
    if not is_toy_model(config.guide.sds.model.model):
        return config, None
    normal = check_toy_prompt(config.prompt.text, config.prompt.negative)
    if normal == config.prompt.text:
        return config, None
    note = f"the toy model reads {config.prompt.text!r} as {normal!r}"
    return dataclasses.replace(config, prompt=dataclasses.replace(config.prompt, text=normal)), note


TEXT_TO_3D_PRESETS = (TOY_PRESET, INTERACTIVE_GPU_PRESET, GPU_PRESET)
"""The shipped presets a web UI offers for text to 3D (``reconstruct`` fits datasets; ``tiny-test`` is the suite's)."""


def runnable_presets(model: str | None, chosen: str) -> tuple[list[str], dict[str, str]]:
    """The text-to-3D presets that can run on this machine, ``chosen`` first among them, and why each other one
    cannot: a preset's diffusion model must be at hand (bundled, a folder, ``model``, or in the Hugging Face cache,
    or downloadable) and a Stable Diffusion preset needs CUDA (a step takes seconds on a CPU) unless ``model`` is
    given."""
    offered, hidden = [chosen], {}
    cuda = cuda_available()
    for name in TEXT_TO_3D_PRESETS:
        if name == chosen:
            continue
        config = load_config(name, (), [("guide.sds.model.model", model)] if model else [])
        source = config.guide.sds.model.model
        if model is None and not is_toy_model(source) and not cuda:
            hidden[name] = "needs a CUDA GPU"
        elif not (is_toy_model(source) or Path(source).expanduser().is_dir() or _downloadable(source)):
            hidden[name] = f"{source} is not downloaded and the hub is off (HF_HUB_OFFLINE)"
        else:
            offered.append(name)
    return offered, hidden


def _downloadable(model: str) -> bool:
    """In the Hugging Face cache, or fetchable (the hub is not switched off)."""
    from huggingface_hub import try_to_load_from_cache  # a hub id: only for the SD presets

    cached = isinstance(try_to_load_from_cache(model, "unet/config.json"), str)
    return cached or os.environ.get("HF_HUB_OFFLINE", "").upper() not in ("1", "ON", "YES", "TRUE")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device. Without a GPU driver on the machine the answer is no, at once; with one,
    torch (seconds to import) is asked."""
    if not any(Path(p).exists() for p in _GPU_DRIVER_FILES) and shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


# What a CUDA (or ROCm) driver puts on a machine; torch cannot see a device without one of them.
_GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")


def _nest(pairs: Iterable[tuple[str, object]]) -> dict:
    """``[("a.b", 1)]`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    for key, value in pairs:
        node = out
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return out
