"""Hostile inputs: a file names code only through what the user registered on purpose, and any
file that would hang, crash or run code is one line on stderr and exit 2.

- Callables by intent: a space, an arch.json or a stored study naming ``os:abort`` or
  ``logging:basicConfig`` is refused and nothing is called; a backbone registered by a
  ``--plugins`` module or an entry point works.
- Classes of bad input: alias bombs, deep nesting, huge integers, non-finite floats, huge layers,
  inverted search ranges, file faults, a large arch.json (linear, not quadratic, to read).
- A property-based test mutates valid spaces and arch.json files: parsing them succeeds or
  raises ``MtnasError`` with a one-line message, never anything else, never a hang.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtnas.cli import main
from mtnas.core import PLUGINS_ENV, ConfigError, MtnasError
from mtnas.data import DatasetBundle, TaskData, TaskInfo
from mtnas.model import arch_space, load_model
from mtnas.space import BUILTIN_DIR, load_resolved, load_space, space_from_dict
from mtnas.tree import Architecture, BranchingTree
from tests.datasets._tiny_factory import isolate_plugins

#: A plugin module of the user's own: a dataset and a backbone, registered by decorator.
PLUGIN = '''
from dataclasses import dataclass

import torch
from torch import nn

import mtnas
from mtnas.core import bounded
from mtnas.data import DatasetBundle, TaskData, TaskInfo
from mtnas.nn import BackboneType, BlockPlan


def make(*, seed=0, n=48):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    data = TaskData(x, {"a": (x[:, 0] > 0).long(), "b": x[:, 1:2].clone()})
    return DatasetBundle(data, data, data, (TaskInfo("a", "classification", 2), TaskInfo("b", "regression", 1)))


@dataclass(frozen=True)
class Layer:
    width: int = bounded(ge=1)


def plan(layers, input_shape):
    plans, f = [], input_shape[0]
    for i, cfg in enumerate(layers):
        plans.append(BlockPlan(i, (f,), (cfg.width,), lambda f=f, w=cfg.width: nn.Sequential(nn.Linear(f, w), nn.ReLU())))
        f = cfg.width
    return plans


def backbone():
    return BackboneType(Layer, plan, "a small MLP")
'''
REGISTER = '''
mtnas.register_dataset("hostile_tiny")(make)
mtnas.register_backbone("hostile_mlp")(backbone)
'''


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_plugins(monkeypatch)  # registrations end with the test
    monkeypatch.setenv(PLUGINS_ENV, "")  # so does what --plugins passes on to child processes


def _cli_error(args: list[str], capfd: pytest.CaptureFixture) -> str:
    """Run the CLI in this process: it must fail with exit 2 and exactly one line on stderr."""
    capfd.readouterr()
    code = main(args)
    err = capfd.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mtnas: error: "), err
    return err


def _tiny_bundle() -> DatasetBundle:
    x = torch.randn(8, 6)
    data = TaskData(x, {"a": torch.zeros(8, dtype=torch.long), "b": torch.zeros(8, 1)})
    return DatasetBundle(data, data, data, (TaskInfo("a", "classification", 2), TaskInfo("b", "regression", 1)))


def _plugin_space(backbone: str = "hostile_mlp", dataset: str = "hostile_tiny") -> dict[str, Any]:
    return {"dataset": {"name": dataset}, "backbone": {"name": backbone, "layers": [{"width": 8}, {"width": 4}]},
            "tasks": ["a", "b"], "training": {"epochs": 1, "batch_size": 16}}


def _plugin_arch(path: Path, backbone: str) -> Path:
    """An arch.json whose resolved space names ``backbone`` (resolved with the built-in mlp: nothing loads)."""
    space = space_from_dict(_plugin_space("mlp")).resolve(_tiny_bundle())
    data = space.to_dict()
    data["backbone"]["name"] = backbone
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {1: [("a",), ("b",)]})
    return Architecture(tree, data).save(path)


# --- callables only by intent ------------------------------------------------------------------------


HOSTILE_SPACES = {
    "dataset-abort": ({"factory": "os:abort"}, {"name": "mlp"}, "dataset.factory: unknown dataset 'os:abort'"),
    "dataset-basicConfig": ({"factory": "logging:basicConfig", "args": {"filename": "pwned.log"}}, {"name": "mlp"},
                            "dataset.factory: unknown dataset 'logging:basicConfig'"),
    "backbone-abort": ({"name": "digit_gratings"}, {"name": "os:abort"}, "backbone.name: unknown backbone 'os:abort'"),
    "backbone-basicConfig": ({"name": "digit_gratings"}, {"name": "logging:basicConfig"},
                             "backbone.name: unknown backbone 'logging:basicConfig'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SPACES))
def test_a_space_naming_a_function_is_refused_in_one_line_and_nothing_is_called(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    import logging

    dataset, backbone, expected = HOSTILE_SPACES[case]
    monkeypatch.chdir(tmp_path)
    space = {"dataset": dataset, "backbone": {**backbone, "layers": [{"width": 4}]}, "tasks": ["digit"]}
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(space))
    handlers = list(logging.root.handlers)
    err = _cli_error(["train", "evil.yaml", "--epochs", "1", "--quiet"], capfd)
    assert expected in err  # names the key and the value ...
    assert "register it with @mtnas.register_" in err and "--plugins MODULE" in err  # ... and how to register
    assert "(mtnas imports no code a file names)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.yaml"]  # basicConfig(filename=...) made no file
    assert logging.root.handlers == handlers  # nor a handler; and os.abort did not run: this process lives on


def test_a_stored_study_naming_a_function_is_refused_by_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capfd: pytest.CaptureFixture) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for name, space, expected in (
        ("evil-backbone", {**_plugin_space("os:abort", "digit_gratings")}, "unknown backbone 'os:abort'"),
        ("evil-dataset", {**_plugin_space("mlp"), "dataset": {"factory": "logging:basicConfig",
                                                               "args": {"filename": "pwned.log"}}},
         "dataset.factory: unknown dataset 'logging:basicConfig'"),
    ):
        study = optuna.create_study(storage=url, study_name=name, directions=["minimize", "minimize"])
        study.set_user_attr("mtnas", {"space": space, "seed": 0, "strategy": "differentiable",
                                      "objectives": ["delta_m", "flops"], "trials": 1, "artifacts": str(tmp_path)})
        err = _cli_error(["worker", "--storage", url, "--study", name, "--device", "cpu", "--quiet"], capfd)
        assert expected in err
    assert not (tmp_path / "pwned.log").exists()


def test_an_arch_json_naming_an_unregistered_backbone_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    for backbone in ("hostile_mlp", "os:abort", "logging:basicConfig"):
        arch = _plugin_arch(tmp_path / f"{backbone.replace(':', '_')}.json", backbone)
        err = _cli_error(["retrain", str(arch), "--epochs", "1", "--device", "cpu", "--quiet"], capfd)
        assert f"space.backbone.name: unknown backbone '{backbone}'" in err
        with pytest.raises(ConfigError, match=f"unknown backbone '{backbone}'"):
            load_model(arch)
    assert not (tmp_path / "retrain").exists()


def test_a_backbone_registered_by_a_plugin_module_works_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # plugin modules are found in the current directory
    monkeypatch.delitem(sys.modules, "hostile_plugin", raising=False)
    (tmp_path / "hostile_plugin.py").write_text(PLUGIN + REGISTER)
    arch = _plugin_arch(tmp_path / "arch.json", "hostile_mlp")
    _cli_error(["retrain", str(arch), "--epochs", "1", "--device", "cpu", "--quiet"], capfd)  # not loaded: refused
    assert "hostile_plugin" not in sys.modules
    assert main(["--plugins", "hostile_plugin", "retrain", str(arch), "--epochs", "1", "--device", "cpu", "--json",
                 "--quiet"]) == 0, capfd.readouterr().err
    report = json.loads(capfd.readouterr().out)
    assert set(report["test"]) == {"a", "b"} and report["epochs"] == 1
    assert os.environ[PLUGINS_ENV] == "hostile_plugin"  # passed on to the processes a command starts


def test_mtnas_plugins_env_loads_modules_like_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "hostile_env_plugin", raising=False)
    (tmp_path / "hostile_env_plugin.py").write_text(PLUGIN + REGISTER)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_plugin_space()))
    monkeypatch.setenv(PLUGINS_ENV, "hostile_env_plugin")
    assert main(["train", "s.yaml", "--epochs", "1", "--quiet", "--json"]) == 0, capfd.readouterr().err
    monkeypatch.setenv(PLUGINS_ENV, "no_such_plugin_module")
    err = _cli_error(["train", "s.yaml"], capfd)
    assert f"{PLUGINS_ENV}: cannot import plugin module 'no_such_plugin_module'" in err
    monkeypatch.setenv(PLUGINS_ENV, "")
    err = _cli_error(["--plugins", "not a module", "spaces"], capfd)
    assert "--plugins: 'not a module' is not a module name" in err


def test_a_backbone_from_an_entry_point_works_and_loads_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hostile_ep_plugin", raising=False)
    (tmp_path / "hostile_ep_plugin.py").write_text(PLUGIN)  # no decorator: the entry points register it
    points = {
        "mtnas.backbones": [importlib.metadata.EntryPoint("ep_mlp", "hostile_ep_plugin:backbone", "mtnas.backbones")],
        "mtnas.datasets": [importlib.metadata.EntryPoint("ep_tiny", "hostile_ep_plugin:make", "mtnas.datasets")],
    }
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: points[kw["group"]] if kw.get("group") in points else real(**kw))

    space_from_dict(_plugin_space("mlp"))
    assert "hostile_ep_plugin" not in sys.modules  # an entry point loads only when a file names it
    arch = _plugin_arch(tmp_path / "arch.json", "ep_mlp")
    model = load_model(arch)
    assert "hostile_ep_plugin" in sys.modules
    assert type(model.layers[0][0][0]).__name__ == "Linear"
    space, bundle = load_resolved(space_from_dict(_plugin_space("ep_mlp", "ep_tiny")))
    assert space.input_shape == (6,) and len(bundle.train) == 48
    # the older "pkg.module:function" spelling finds the entry point of that value
    assert space_from_dict(_plugin_space("hostile_ep_plugin:backbone")).backbone.name == "hostile_ep_plugin:backbone"


# --- inputs that would hang or crash: one line, exit 2 --------------------------------------------------


def _laughs(levels: int = 9) -> str:
    """9 ** 9 "lol"s from a 1 KB file: each level lists the one before nine times."""
    lines = ['      - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"      - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return ("search:\n  ranges:\n    balancing:\n" + "\n".join(lines) + "\n"
            f"dataset: {{name: digit_gratings}}\nbackbone: {{name: conv, layers: *l{levels - 1}}}\ntasks: [digit]\n")


SPACE_FILES = {
    "billion-laughs": (_laughs(), "its aliases expand to more than 100,000 values"),
    "deep": ("description: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
    "huge-int": ("seed: " + "9" * 5000 + "\n", "an integer of 5000 digits"),
    "recursive-alias": ("description: &a [*a]\n", "a recursive alias"),
    "malformed": ("dataset: [\n", "malformed YAML"),
    "not-a-mapping": ("- 1\n- 2\n", "expected a YAML mapping at the top, got list"),
    "bad-date": ("description: 2020-02-30\n", "a YAML value that cannot be read (ValueError"),
}


@pytest.mark.parametrize("case", sorted(SPACE_FILES))
def test_a_hostile_space_file_is_one_line_and_quick(case: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    text, expected = SPACE_FILES[case]
    (tmp_path / "s.yaml").write_text(text)
    start = time.perf_counter()
    err = _cli_error(["train", str(tmp_path / "s.yaml"), "--quiet"], capfd)
    assert time.perf_counter() - start < 10
    assert expected in err and len(err) < 600


def test_file_faults_of_a_space_or_an_arch_json_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "garbage.yaml").write_bytes(os.urandom(64) + b"\0")
    (tmp_path / "garbage.json").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (tmp_path / "latin1.yaml").write_bytes(b"description: caf\xe9\n")
    (tmp_path / "big.yaml").write_text("description: " + "x" * (2**20 + 10) + "\n")
    cases = [
        (["train", str(tmp_path / "dir.yaml")], "is a directory"),
        (["train", str(tmp_path / "garbage.yaml")], "binary data, not text"),
        (["train", str(tmp_path / "latin1.yaml")], "not UTF-8 text"),
        (["train", str(tmp_path / "big.yaml")], "larger than 1 MiB"),
        (["retrain", str(tmp_path / "dir.json")], "is a directory"),
        (["retrain", str(tmp_path / "garbage.json")], "binary data, not text"),
        (["show", str(tmp_path / "garbage.json")], "binary data, not text"),
        (["train", "digit_gratings", "--tree", str(tmp_path / "garbage.json")], "binary data, not text"),
    ]
    if os.geteuid() != 0:  # root reads any file
        (tmp_path / "locked.yaml").write_text("seed: 1\n")
        (tmp_path / "locked.yaml").chmod(0)
        cases.append((["train", str(tmp_path / "locked.yaml")], "Permission denied"))
    for args, expected in cases:
        assert expected in _cli_error(args, capfd), args


def _arch_dict() -> dict[str, Any]:
    space = space_from_dict(_plugin_space("mlp")).resolve(_tiny_bundle())
    tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {1: [("a",), ("b",)]})
    return Architecture(tree, space.to_dict()).to_dict()


ARCH_TEXTS = {
    "deep": lambda: '{"format": "mtnas-architecture", "space": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "huge-int": lambda: json.dumps({**_arch_dict(), "cost": {"flops": 1}}).replace('"flops": 1', '"flops": ' + "7" * 5000),
    "nan-lr": lambda: json.dumps(_arch_dict()).replace('"lr": 0.003', '"lr": NaN'),
    "inf-lr": lambda: json.dumps(_arch_dict()).replace('"lr": 0.003', '"lr": 1e999'),
    "huge-layer": lambda: json.dumps(_arch_dict()).replace('"width": 8', '"width": 100000000'),
    "huge-input": lambda: json.dumps(_arch_dict()).replace('"input_shape": [6]', '"input_shape": [100000000000]'),
    "truncated": lambda: json.dumps(_arch_dict())[:200],
}
ARCH_ERRORS = {
    "deep": "JSON nested 100001 levels deep, more than the 64", "huge-int": "a JSON integer of 5000 digits",
    "nan-lr": "training.lr: expected a finite number, got nan", "inf-lr": "training.lr: expected a finite number, got inf",
    "huge-layer": "backbone.layers[0].width: must be <= 65536, got 100000000",
    "huge-input": "input_shape: the input holds 100,000,000,000 values per sample", "truncated": "not valid JSON",
}


@pytest.mark.parametrize("case", sorted(ARCH_TEXTS))
def test_a_hostile_arch_json_is_one_line(case: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    path = tmp_path / "arch.json"
    path.write_text(ARCH_TEXTS[case]())
    file_level = case in ("deep", "huge-int", "truncated")  # `show` reads the file, `retrain` also its space
    command = ["show", str(path)] if file_level else ["retrain", str(path), "--quiet"]
    assert ARCH_ERRORS[case] in _cli_error(command, capfd)


@pytest.mark.parametrize(("where", "value", "expected"), [
    ("training.lr", math.inf, "training.lr: expected a finite number, got inf"),
    ("training.lr", math.nan, "training.lr: expected a finite number, got nan"),
    ("tasks", [{"name": "digit", "weight": -math.inf}], "tasks[0].weight: expected a finite number, got -inf"),
    ("seed", 1e23, "seed: expected int, got 1e+23"),
    ("seed", 2**40, "seed: must be <= 4294967295"),
    ("seed", 10**30, "seed: expected an integer of at most 9223372036854775807 in size"),
    ("backbone.layers", [{"channels": 100_000_000}], "backbone.layers[0].channels: must be <= 8192, got 100000000"),
    ("search.ranges.tau0", [4.0, 1.0], "search.ranges.tau0: low 4.0 is above high 1.0"),
    ("search.ranges.cost_weight", [0.0, 1.0, "log"], "search.ranges.cost_weight: a log scale needs low > 0, got 0.0"),
    ("search.ranges.cost_weight", [-1.0, 1.0, "log"], "a log scale needs low > 0, got -1.0"),
    ("search.ranges.cost_weight", [0.1, 1.0, "lin"], "the third item is the scale and must be 'log', got 'lin'"),
    ("search.ranges.max_branches", [0, 3], "search.ranges.max_branches: must be >= 1, got 0"),
    ("search.ranges.max_branches", [-3, -1], "search.ranges.max_branches: must be >= 1, got -3"),
    ("search.ranges.warmup_epochs", [-2, 3], "search.ranges.warmup_epochs: must be >= 0, got -2"),
    ("search.ranges.tau0", [0.0, 2.0], "search.ranges.tau0: must be > 0.0, got 0.0"),
    ("search.ranges.routing_lr", [1e-3, math.inf], "expected a finite number, got inf"),
    ("routing.max_branches", 0, "routing.max_branches: must be >= 1, got 0"),
])
def test_bad_values_are_refused_when_the_space_is_parsed(tmp_path: Path, where: str, value: Any, expected: str) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "digit_gratings.yaml").read_text())
    *parents, leaf = where.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_space(tmp_path / "s.yaml")  # parsing alone: no dataset, no trial
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_error_messages_show_values_in_bounded_time_and_size() -> None:
    from mtnas.core import short_repr

    bomb: Any = ["lol"] * 9
    for _ in range(12):  # 9 ** 13 items if expanded
        bomb = [bomb] * 9
    start = time.perf_counter()
    text = short_repr(bomb)
    assert time.perf_counter() - start < 0.5 and len(text) <= 60
    assert short_repr(10**5000) == "<an integer of 16610 bits>" and short_repr("a\nb") == "'a\\nb'"
    with pytest.raises(ConfigError) as err:
        space_from_dict({**_plugin_space("mlp"), "tasks": bomb})
    assert len(str(err.value)) < 300


def test_large_finite_numbers_parse_within_float32s_range() -> None:
    space = space_from_dict({**_plugin_space("mlp"), "training": {"lr": 3e38, "weight_decay": 10**30}})
    assert space.training.lr == 3e38 and space.training.weight_decay == 1e30
    with pytest.raises(ConfigError, match=r"training.lr: 1e\+39 is beyond float32's range"):
        space_from_dict({**_plugin_space("mlp"), "training": {"lr": 1e39}})


def test_a_backbone_too_large_to_build_is_refused_at_resolve() -> None:
    data = yaml.safe_load((BUILTIN_DIR / "digit_gratings.yaml").read_text())
    data["backbone"]["layers"] = [{"channels": 8192}] * 6  # each within bounds, 3 billion parameters together
    data["dataset"]["args"] = {"n_train": 4, "n_val": 4, "n_test": 4}
    with pytest.raises(MtnasError, match=r"the backbone has [\d,]+ parameters by layer \d, more than mtnas builds "
                                         r"\(2,147,483,648\); lower the channels or width"):
        load_resolved(space_from_dict(data))


def test_a_large_arch_json_reads_in_linear_time(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    tasks = [f"task{i:05d}" for i in range(8000)]
    partitions = [[tasks]] + [[[t] for t in tasks]] * 5  # 0.8 MB
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"format": "mtnas-architecture", "version": 1, "tasks": tasks,
                                "partitions": partitions, "space": {}}))
    start = time.perf_counter()
    arch = Architecture.load(path)
    assert arch.tree.num_nodes == 1 + 5 * 8000
    assert main(["show", str(path)]) == 0
    assert capfd.readouterr().out.count("\n") == 8001
    assert time.perf_counter() - start < 10  # quadratic checks took 89 s on such a file
    repeated = {**json.loads(path.read_text()), "partitions": [[tasks + ["task00007"]]]}
    path.write_text(json.dumps(repeated))
    assert "layer 0: tasks ['task00007'] appear more than once" in _cli_error(["show", str(path)], capfd)


def test_a_tree_that_peels_one_task_per_layer_renders_without_recursion() -> None:
    import inspect

    n = 300  # the tree is as deep as it has tasks: deeper than the recursion limit set below
    tasks = [f"t{i}" for i in range(n)]
    tree = BranchingTree(tasks, [[[t] for t in tasks[:layer]] + [tasks[layer:]] for layer in range(n)])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)  # a recursive renderer would need ~n more frames
    try:
        text = tree.render_text()
    finally:
        sys.setrecursionlimit(limit)
    assert text.count("\n") == 2 * n - 2 and text.splitlines()[-1].endswith(f"layer {n - 1}: t{n - 1}")


# --- property-based: mutated spaces and arch.json files parse or fail in one line ------------------------

BASES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(BUILTIN_DIR.glob("*.yaml"))}
TINY = {"n_train": 4, "n_val": 4, "n_test": 4}
_BUNDLES: dict[str, DatasetBundle] = {}


def _bundle(name: str) -> DatasetBundle | None:
    """A tiny dataset of a built-in space to resolve against (None for spaces of data on disk)."""
    base = BASES[name]
    if "root" in base["dataset"].get("args", {}) or base["dataset"]["name"] in ("nyuv2", "cityscapes", "celeba"):
        return None
    if name not in _BUNDLES:
        space = space_from_dict({**base, "dataset": {**base["dataset"], "args": {**base["dataset"]["args"], **TINY}}})
        _BUNDLES[name] = load_resolved(space)[1]
    return _BUNDLES[name]


def _deep(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


NASTY = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 3, 2**31, 2**63, 2**64, 10**30, -(10**30), 1e308, -1e308, 1e-320,
                     math.inf, -math.inf, math.nan, "", " ", "os:abort", "logging:basicConfig", "pkg.mod:fn", "\n",
                     "\x00", "é", "a\nb", "log", "conv", "digit", [], {}, [[]], {"": None}, [1, 2], [2, 1, "log"],
                     [0, 0], [-1, 5]]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.integers(0, 4000).map(lambda n: "y" * n),
    st.integers(1, 100).map(_deep),
    st.lists(st.integers(-5, 10**6), max_size=12),
    st.dictionaries(st.text(max_size=8), st.integers(-3, 3), max_size=4),
)
MUTATIONS = ("replace", "delete", "add_key", "wrap", "stringify", "duplicate")


def _mutate(data: Any, draw: Any) -> Any:
    """``data`` with one random change at a random place (a copy)."""
    data = copy.deepcopy(data)
    holder, key = None, None
    node = data
    for _ in range(draw(st.integers(0, 6))):  # walk down a few levels
        if isinstance(node, dict) and node:
            holder, key = node, draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            holder, key = node, draw(st.integers(0, len(node) - 1))
        else:
            break
        node = holder[key]
    op = draw(st.sampled_from(MUTATIONS))
    if holder is None:
        return draw(NASTY) if op == "replace" else data
    if op == "replace":
        holder[key] = draw(NASTY)
    elif op == "delete":
        del holder[key]
    elif op == "add_key" and isinstance(holder, dict):
        holder[draw(st.sampled_from(["name", "factory", "weights", "extra", "layers", "ranges", "x" * 300]))] = draw(NASTY)
    elif op == "wrap":
        holder[key] = [holder[key]]
    elif op == "stringify":
        holder[key] = str(holder[key])
    elif op == "duplicate" and isinstance(holder, list):
        holder.append(copy.deepcopy(holder[key]))
    return data


def _one_line_or_ok(call: Any) -> Any:
    """``call()``, or None when it raised MtnasError with a one-line message; anything else fails the test."""
    try:
        return call()
    except MtnasError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 3000, repr(message[:500])
        return None


HYPOTHESIS = settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                      database=None)


@HYPOTHESIS
@given(name=st.sampled_from(sorted(BASES)), via_yaml=st.booleans(), data=st.data())
def test_a_mutated_space_parses_or_fails_in_one_line(name: str, via_yaml: bool, data: st.DataObject) -> None:
    mutated = BASES[name]
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate(mutated, data.draw)
    if via_yaml:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "space.yaml"
            path.write_text(yaml.safe_dump(mutated, allow_unicode=False))
            space = _one_line_or_ok(lambda: load_space(path))
    else:
        space = _one_line_or_ok(lambda: space_from_dict(mutated, "space.yaml"))
    bundle = _bundle(name) if space is not None else None
    if bundle is not None:
        resolved = _one_line_or_ok(lambda: space.resolve(bundle))
        if resolved is not None:
            json.dumps(resolved.to_dict())  # a resolved space is plain data that an arch.json can hold
            _ = resolved.content_hash


ARCH_BASE = None


def _arch_base() -> dict[str, Any]:
    global ARCH_BASE
    if ARCH_BASE is None:
        space, bundle = load_resolved(space_from_dict({**BASES["digit_gratings"], "dataset": {
            "name": "digit_gratings", "args": TINY}}))
        tree = BranchingTree.from_split_points(space.task_names, space.num_layers, {
            2: [("digit", "parity", "ge5"), ("orientation", "frequency", "diagonal")]})
        ARCH_BASE = Architecture(tree, space.to_dict(), cost={"flops": 10, "params": 3}).to_dict()
    return ARCH_BASE


@HYPOTHESIS
@given(data=st.data(), raw=st.sampled_from(["json", "truncate", "garbage", "nest"]), cli=st.integers(0, 9))
def test_a_mutated_arch_json_loads_or_fails_in_one_line(data: st.DataObject, raw: str, cli: int) -> None:
    import tempfile

    mutated = _arch_base()
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate(mutated, data.draw)
    text = json.dumps(mutated)
    if raw == "truncate":
        text = text[: data.draw(st.integers(0, len(text)))]
    elif raw == "garbage":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(max_size=20)) + text[at:]
    elif raw == "nest":
        depth = data.draw(st.integers(1, 3000))
        text = text.replace('"cost": {', '"cost": {"deep": ' + "[" * depth + "]" * depth + ", ", 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "arch.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        arch = _one_line_or_ok(lambda: Architecture.load(path))
        if arch is not None:
            _one_line_or_ok(lambda: arch_space(arch, str(path)))
            arch.tree.render_text()
        if cli == 0:  # a few CLI runs: `show` prints the tree or one line on stderr, exit 2
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["show", str(path)])
            assert code in (0, 2) and (code == 0 or err.getvalue().count("\n") == 1), err.getvalue()
