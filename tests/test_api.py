"""The public Python API: ``import mtnas`` is cheap, and the README's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mtnas

ROOT = Path(__file__).resolve().parents[1]


def _api_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of the README's Python API section, in order."""
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks, current, lang = [], None, ""
    for line in section.splitlines():
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                blocks.append((lang, "\n".join(current) + "\n"))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def readme_example(index: int = 0) -> str:
    return [text for lang, text in _api_blocks() if lang == "python"][index]


def readme_output(index: int) -> list[str]:
    """The lines of the ``index``-th plain block of the section: what an example printed."""
    return [text for lang, text in _api_blocks() if not lang][index].strip().splitlines()


def test_import_mtnas_loads_no_torch() -> None:
    code = "import sys, mtnas; print('torch' in sys.modules, mtnas.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", mtnas.__version__]


def test_every_public_name_resolves() -> None:
    for name in mtnas.__all__:
        assert getattr(mtnas, name) is not None, name
    assert "load_model" in dir(mtnas)


def test_the_readme_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "runs" / "api").mkdir(parents=True)  # as a first run leaves it: the example runs again
    (tmp_path / "runs" / "api" / "run.json").write_text('{"storage": "sqlite:///x", "study": "api"}')
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("searched: 0") and ": " in lines[0]
    front = [line for line in lines if line.startswith("trial ")]
    assert front and all("delta-m" in line and "FLOPs" in line for line in front)
    assert not any(line.startswith(("trial 0:", "trial 1:")) for line in front)  # the references are not picks
    assert [line.split(":")[0] for line in lines] == [line.split(":")[0] for line in readme_output(0)]
    tasks = mtnas.load_space("digit_gratings").task_names
    assert lines[-1] == str({t: (4, n) for t, n in zip(tasks, (10, 2, 2, 4, 2, 2))})
    assert (tmp_path / "candidates.json").is_file() and (tmp_path / "runs" / "api" / "retrain" / "final.json").is_file()


def test_the_readme_full_budget_search_prints_a_tree_and_the_planted_groups(tmp_path: Path) -> None:
    """The example as written, on a one-epoch budget: the full one takes minutes on a 2-core CPU,
    and its figures are the recovery suite's (``benchmarks/recovery_suite.py``), not this test's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = 'space, bundle = mtnas.load_resolved("digit_gratings")\n'
    example = readme_example(1)
    assert load in example
    example = example.replace(load, load + "space = space.with_budget(1)\n")
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    tree_line, planted_line = proc.stdout.strip().splitlines()
    shown = readme_output(1)
    assert planted_line == shown[1]  # the planted groups are data: exactly what the README shows
    assert re.fullmatch(r"(\d+(-\d+)?: [a-z0-9_,]+( / [a-z0-9_,]+)*)( \| \d+(-\d+)?: [a-z0-9_,]+( / [a-z0-9_,]+)*)*",
                        tree_line), tree_line
