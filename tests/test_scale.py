"""Many tasks: a 40-task search (CelebA's shape, on the generated stand-in) runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mtnas.space import BUILTIN_DIR
from mtnas.study import run_search
from mtnas.tree import Architecture


def test_a_40_task_search_runs_end_to_end_and_draws_its_trees(tmp_path: Path) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "synth_attributes.yaml").read_text())
    data["dataset"]["args"].update(n_train=96, n_val=48, n_test=48, size=8)
    data["backbone"]["layers"] = [{"channels": 4}, {"channels": 4, "stride": 2}]
    data["routing"]["max_branches"] = 2
    data["training"].update(epochs=1, batch_size=32)
    data["search"].update(epochs=2, warmup_epochs=1, proxy_epochs=1)
    space = tmp_path / "attrs.yaml"
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    run, study = run_search(str(space), name="a40", trials=3, runs_dir=tmp_path, progress=False)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 3
    arch = Architecture.load(run.trial_dir(2) / "arch.json")
    assert len(arch.tree.tasks) == 40 and arch.tree.key == study.trials[2].user_attrs["tree_key"]
    assert (run.trial_dir(2) / "tree.png").read_bytes()[:4] == b"\x89PNG"
    front = json.loads((run.root / "pareto.json").read_text())
    assert {0}.issubset({f["trial"] for f in front})
