"""The README matches the package: every built-in space is in its tables, and every module path
and dotted name it points at exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from mtnas.space import builtin_paths

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: dotted names in the README that are not Python objects: entry-point groups
NOT_MODULES = {"mtnas.datasets", "mtnas.backbones"}


def test_every_builtin_space_has_a_row_in_the_readme() -> None:
    rows = set(re.findall(r"^\| `([a-z0-9_]+)` \|", README, re.M))
    missing = sorted(set(builtin_paths()) - rows)
    assert not missing, f"built-in spaces without a row in the README's tables: {missing}"


def test_the_files_the_readme_names_exist() -> None:
    paths = set(re.findall(r"`((?:mtnas|benchmarks|examples|tests|docs)/[\w/.-]+\.\w+)`", README))
    assert paths and not sorted(p for p in paths if not (ROOT / p).is_file())


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def test_the_dotted_names_the_readme_uses_exist() -> None:
    names = {n.rstrip(".") for n in re.findall(r"`(mtnas(?:\.\w+)+)", README)} - NOT_MODULES
    assert "mtnas.model.save_backbone_weights" in names
    assert not sorted(n for n in names if not _resolves(n))


def test_the_readme_says_where_the_command_is() -> None:
    assert ".venv/bin/mtnas" in README and "source .venv/bin/activate" in README
