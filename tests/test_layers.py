"""The layering of DESIGN.md, enforced: import-linter's contract in pyproject.toml ([tool.importlinter])."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (pip install -e '.[test]')")
def test_no_module_imports_from_a_layer_above_its_own():
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_every_package_is_in_a_layer():
    """A new top-level module must be placed in the layers, or the contract would not see it."""
    config = (REPO / "pyproject.toml").read_text()
    layered = config[config.index("[tool.importlinter]"):]
    modules = {p.stem for p in (REPO / "text3d").iterdir() if p.suffix == ".py" and not p.stem.startswith("__")}
    modules |= {p.name for p in (REPO / "text3d").iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(m for m in modules if f"text3d.{m}" not in layered)
    assert missing == [], f"not in any layer of pyproject.toml's [tool.importlinter]: {missing}"
