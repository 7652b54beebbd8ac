"""Run directories: ``outputs/<slug>-<seed>/`` with the resolved config, log, checkpoints and outputs."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from text3d.config import build, diff, load_yaml, to_yaml
from text3d.config.schema import Text3DConfig
from text3d.errors import UserError
from text3d.io import write_text

DEFAULT_OUTPUT_ROOT = Path("outputs")


def slugify(text: str, max_len: int = 48) -> str:
    """A file-name-safe slug of user text: lowercase ASCII letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    return slug or "run"


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
            saved = build(Text3DConfig, [load_yaml(run.config_path)])
            changed = diff(saved, config)
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
