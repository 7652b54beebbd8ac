"""Run directories: ``outputs/<slug>-<seed>/`` with the resolved config, log, checkpoints and outputs."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from text3d.config import build, diff, load_yaml, to_yaml
from text3d.app.schema import Text3DConfig
from text3d.errors import UserError
from text3d.io import write_text

DEFAULT_OUTPUT_ROOT = Path("outputs")


def slugify(text: str, max_len: int = 48) -> str:
    """A file-name-safe slug of user text: lowercase ASCII letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "run"


def run_names(config: Text3DConfig, name: str | None = None) -> Iterator[str]:
    """Directory names for a run, in order of preference: ``<slug>-<seed>``, then ``…-2``, ``…-3``, ...

    ``name`` (default: the prompt) is slugified: user text reaches a path only through :func:`slugify`.
    """
    base = f"{slugify(name if name is not None else config.prompt.text)}-{config.seed}"
    yield base
    for k in itertools.count(2):
        yield f"{base}-{k}"


def saved_config(path: Path) -> Text3DConfig:
    """The config a run directory was made with (its ``config.yaml``); ``UserError`` if it does not load."""
    return build(Text3DConfig, [load_yaml(path / "config.yaml")])


def holds_config(path: Path, config: Text3DConfig) -> bool:
    """Whether ``path`` holds a run made with exactly ``config`` (an older schema's run never does)."""
    try:
        return not diff(saved_config(path), config)
    except UserError:
        return False


def is_finished(path: Path) -> bool:
    """A run that got through export (``metrics.json`` is written last, after ``model.glb``)."""
    return (path / "metrics.json").is_file() and (path / "model.glb").is_file()


@dataclass
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @classmethod
    def prepare(cls, path: Path, config: Text3DConfig, resume: bool) -> RunDir:
        """Create the run directory, or re-open it for ``resume`` after checking the config is unchanged.

        An existing run is never overwritten: without ``resume`` it is an error.
        """
        run = cls(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"output path {path} exists and is not a directory")
        if run.config_path.exists():
            if not resume:
                raise UserError(f"{path} already holds a run; pass --resume to continue it, or choose another --out")
            changed = diff(saved_config(path), config)
            if changed:
                raise UserError(f"cannot resume {path}: the config differs in {', '.join(changed)}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output directory {path}: {e.strerror}") from None
        write_text(run.config_path, to_yaml(config))
        return run

    def __enter__(self) -> RunDir:
        """While inside ``with``, text3d's log records also go to ``log.txt`` (appended across resumes)."""
        self._log_handler = logging.FileHandler(self.path / "log.txt")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("text3d").addHandler(self._log_handler)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("text3d").removeHandler(self._log_handler)
        self._log_handler.close()
