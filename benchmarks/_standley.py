"""Standley et al.'s published trainings, converted to trainings tables (``mtnas.search._table``).

Standley, Zamir, Chen, Guibas, Malik and Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020, trained every subset of 5 Taskonomy tasks as one network in four
settings and published each task's loss (lower is better) on validation and test after the whole
schedule, and on validation after a fifth of it. ``benchmarks/data/standley/original/`` holds their
files unchanged (``README.md`` there says what each is); this module reads them as the paper's
program (``network_selection/main.cpp``) does and writes one table per setting beside them:

* every file's first line holds the 5 half-size single-task networks (cost 0.5 in the paper's
  budget), which the partition problem does not use: dropped;
* each later line is one network: tab-separated cells, one per task, empty where the network does
  not serve the task. Its subset is read off its non-empty cells, so a file that lacks a subset
  (``results_alt_20.txt`` lacks one pair) still reads right;
* the table holds val at fidelity 1 and 0.2 and test at fidelity 1. ``results_small_data_at4.txt``
  is the early table of setting 3: the source does not say at what fraction, so it is read as 0.2,
  as the paper's program uses it in place of the others' 20% tables.

    python -m benchmarks._standley    # rewrites benchmarks/data/standley/*.tsv from the originals
"""

from __future__ import annotations

from pathlib import Path

from mtnas.core import MtnasError
from mtnas.search import TrainingTable

FOLDER = Path(__file__).resolve().parent / "data" / "standley"
ORIGINAL = FOLDER / "original"

#: The paper's tasks in the files' column order (``taskonomy_losses.py``: s, d, n, k, e).
TASKONOMY = ("segment_semantic", "depth_zbuffer", "normal", "keypoints2d", "edge_occlusion")
#: Setting 4's alternative task set: the files do not name its columns, nor does the source.
ALT = ("task_1", "task_2", "task_3", "task_4", "task_5")

#: Setting -> (its tasks, val at full fidelity, test at full fidelity, val at fidelity 0.2), as
#: ``main.cpp`` pairs the files.
SETTINGS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "default": (TASKONOMY, "results.txt", "results_test.txt", "results_20.txt"),
    "large": (TASKONOMY, "results_large.txt", "results_large_test.txt", "results_large_20.txt"),
    "small_data": (TASKONOMY, "results_small_data.txt", "results_small_data_test.txt", "results_small_data_at4.txt"),
    "alt": (ALT, "results_alt.txt", "results_alt_test.txt", "results_alt_20.txt"),
}
EARLY = 0.2


def read_original(path: Path, tasks: tuple[str, ...]) -> dict[frozenset[str], dict[str, float]]:
    """One of the paper's files: each network's subset -> {task: loss}, the half-size line dropped."""
    lines = [line for line in path.read_text().split("\n") if line.strip()]
    out: dict[frozenset[str], dict[str, float]] = {}
    for number, line in enumerate(lines[1:], start=2):  # line 1: the half-size single-task networks
        cells = line.rstrip("\r").split("\t")
        if len(cells) != len(tasks):
            raise MtnasError(f"{path}:{number}: found {len(cells)} cells, expected {len(tasks)}")
        values = {t: float(c) for t, c in zip(tasks, cells) if c.strip()}
        subset = frozenset(values)
        if not subset or subset in out:
            raise MtnasError(f"{path}:{number}: found {'no value' if not subset else 'a subset twice'}, "
                             "expected each subset once")
        out[subset] = values
    return out


def convert(setting: str, folder: Path = ORIGINAL) -> TrainingTable:
    """The trainings table of one setting, from the original files in ``folder``."""
    tasks, val, test, early = SETTINGS[setting]
    values = {}
    for name, fidelity, split in ((val, 1.0, "val"), (test, 1.0, "test"), (early, EARLY, "val")):
        for subset, row in read_original(folder / name, tasks).items():
            values[(subset, fidelity, split)] = row
    return TrainingTable(tasks, "lower", values, f"{setting}.tsv")


def comments(setting: str) -> list[str]:
    """The header comments of a converted table: where its rows come from."""
    _, val, test, early = SETTINGS[setting]
    return [f"Standley et al., ICML 2020, setting {setting}: each subset of the tasks trained as one network, "
            "per-task losses",
            f"converted by benchmarks/_standley.py from original/{val} (val, fidelity 1), {test} (test, fidelity 1) "
            f"and {early} (val, fidelity {EARLY:g}); each file's first line (half-size networks) dropped"]


def converted_text(setting: str, folder: Path = ORIGINAL) -> str:
    """The text of ``<setting>.tsv`` as the conversion writes it."""
    return convert(setting, folder).to_text(comments(setting))


def main() -> None:
    for setting in SETTINGS:
        path = FOLDER / f"{setting}.tsv"
        path.write_text(converted_text(setting))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
