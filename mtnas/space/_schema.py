"""The search-space schema: frozen, typed config objects that validate themselves.

A space names a dataset, a backbone (per-layer blocks), the tasks with their heads, losses and
metrics, the routing limits of the search, and the training budget. ``SearchSpace.resolve``
completes it against the built dataset (task kinds, output sizes, input shape), so a resolved
space alone rebuilds a model. Component names (heads, losses, metrics, balancers, backbones) are
checked against their registries in ``mtnas.nn``; the routing method is a search component and is
checked by ``mtnas.search.check_search_space`` before a search starts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mtnas import nn as components  # read when a value is checked: parsing a space's keys imports no torch
from mtnas.core import (
    MAX_SEED,
    ConfigError,
    MtnasError,
    bounded,
    check_limits,
    check_name,
    did_you_mean,
    parse,
    regular_file,
    short_repr,
    short_text,
    to_data,
)
from mtnas.data import TASK_KINDS

if TYPE_CHECKING:
    from mtnas.data import DatasetBundle
    from mtnas.nn import BlockPlan, ModelLibrary, ModelSource

__all__ = [
    "KIND_DEFAULTS",
    "MAX_LAYERS",
    "MAX_TASKS",
    "WEIGHTS_SUFFIXES",
    "BackboneConfig",
    "DatasetConfig",
    "RoutingConfig",
    "SearchConfig",
    "SearchRanges",
    "SearchSpace",
    "TaskConfig",
    "TrainingConfig",
]

#: Files a pretrained ``backbone.weights`` may be (read by ``mtnas.model``).
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth")
#: The most backbone layers and tasks a space may have (each is a search dimension).
MAX_LAYERS = 1024
MAX_TASKS = 1024

#: Head, loss and metrics a task gets when the space does not name them.
KIND_DEFAULTS: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "classification": ("linear", "cross_entropy", ("accuracy",)),
    "multilabel": ("linear", "bce", ("label_accuracy",)),
    "regression": ("linear", "mse", ("abs_err",)),
    "dense_classification": ("conv", "cross_entropy", ("miou",)),
    "dense_regression": ("conv", "l1", ("abs_err",)),
}


@dataclass(frozen=True)
class DatasetConfig:
    """A registered dataset by ``name`` (built-in or a user's, see ``mtnas.register_dataset``), or
    by ``factory``: the older spelling, the "pkg.module:function" path of a registered function.

    Neither is checked here (reading an arch.json needs no dataset): ``build_dataset`` refuses a
    name that is not registered, and imports nothing for it."""

    name: str | None = None
    factory: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        if (self.name is None) == (self.factory is None):
            raise ConfigError(
                "name: give exactly one of 'name' (a registered dataset) or 'factory' (the path of a registered function)"
            )


@dataclass(frozen=True)
class BackboneConfig:
    """A registered backbone and its per-layer block configs (parsed by the backbone's type).

    A backbone that wraps a model library (``timm``, ``torchvision``) names its ``model`` and
    whether it starts from the library's ``pretrained`` weights; its ``layers`` are cut points in
    that model (omitted: the model's default ones, written in). ``library_version`` is the
    library's version, recorded when the space is resolved (an ``arch.json`` says which built it).

    ``weights`` optionally names a local file the blocks start from (a relative path is read from
    the directory mtnas runs in; it is read when a model is built, see ``mtnas.pretrained``), and
    ``weights_map`` its key layout: ``mtnas``, ``torchvision-resnet`` or ``model`` (a library
    backbone's whole model; default: detected).
    """

    name: str
    layers: tuple[Any, ...] = ()
    model: str | None = None
    pretrained: bool = False
    weights: str | None = None
    weights_map: Literal["mtnas", "torchvision-resnet", "model"] | None = None
    library_version: str | None = None

    def _validate(self) -> None:
        if len(self.layers) > MAX_LAYERS:
            raise ConfigError(f"layers: {len(self.layers)} layers, more than the {MAX_LAYERS} mtnas searches")

    def _check_registered(self) -> None:
        try:
            kind = components.backbone_type(self.name)  # registered: a built-in, or a user's (never imported from here)
        except MtnasError as exc:
            raise ConfigError(f"name: {exc}") from None
        layer_cls = kind.layer_config
        parsed = tuple(parse(layer_cls, layer, f"layers[{i}]") for i, layer in enumerate(self.layers))
        if kind.library is not None:
            parsed = self._model_layers(kind.library, parsed)
        else:
            for key in ("model", "library_version"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{key}: backbone {self.name!r} builds its own blocks and takes no {key}; "
                                      "a model library's backbone (timm, torchvision) does")
            if self.pretrained:
                raise ConfigError(f"pretrained: backbone {self.name!r} has no pretrained weights of its own; "
                                  "name a local file as backbone.weights")
        if not parsed:
            raise ConfigError("layers: a backbone needs at least one layer")
        object.__setattr__(self, "layers", parsed)  # typed form of what the user wrote
        self._validate_weights()

    def _model_layers(self, library: ModelLibrary, parsed: tuple[Any, ...]) -> tuple[Any, ...]:
        """The cut points of the named model: checked, or its default ones when none are given."""
        try:
            library.version()  # installed: else one line with the install hint
        except MtnasError as exc:
            raise ConfigError(f"name: {exc}") from None
        if self.model is None:
            raise ConfigError(f"model: backbone {self.name!r} needs the name of a {library.package} model, "
                              "e.g. model: convnext_atto")
        if self.pretrained and self.weights is not None:
            raise ConfigError("pretrained: give pretrained: true (the library's weights) or backbone.weights "
                              "(a local file), not both")
        try:
            return library.layers(self.model, parsed)
        except MtnasError as exc:
            raise ConfigError(str(exc)) from None

    def _validate_weights(self) -> None:
        if self.weights is not None and (not self.weights.endswith(WEIGHTS_SUFFIXES) or "\0" in self.weights):
            raise ConfigError(f"weights: expected a {', '.join(WEIGHTS_SUFFIXES)} file, got {short_repr(self.weights)}")
        if self.weights_map is not None and self.weights is None:
            raise ConfigError(f"weights_map: {self.weights_map!r} is set but backbone.weights is not; name the file")
        if self.weights_map == "torchvision-resnet" and self.name != "resnet":
            raise ConfigError(
                f"weights_map: 'torchvision-resnet' loads only into the 'resnet' backbone, this one is {self.name!r}"
            )
        if self.weights_map == "model" and self.model is None:
            raise ConfigError(f"weights_map: 'model' (a whole model's state dict) loads only into a backbone that names "
                              f"a model (timm, torchvision), this one is {self.name!r}")

    @property
    def source(self) -> ModelSource | None:
        """The model a library backbone cuts (``None`` for a backbone that builds its own blocks)."""
        if self.model is None:
            return None
        return components.ModelSource(self.model, self.pretrained, self.library_version)

    def plan(self, input_shape: tuple[int, ...], *, pretrained: bool = True) -> list[BlockPlan]:
        """The block plans of this backbone on inputs of ``input_shape``. ``pretrained=False``
        builds a library model without its pretrained weights (same structure: for counting, or
        for loading trained weights into it)."""
        source = self.source
        if source is not None and not pretrained:
            source = replace(source, pretrained=False)
        return components.plan_backbone(self.name, self.layers, tuple(input_shape), source)

    def with_library_version(self) -> BackboneConfig:
        """This config with the model library's installed version recorded (when it has one)."""
        kind = components.backbone_type(self.name)
        if kind.library is None or self.library_version is not None:
            return self
        return replace(self, library_version=kind.library.version())


def _file_digest(path: str) -> str | None:
    """sha256 of a file, cached by path, size and modification time (None when it is missing).

    A FIFO or a device (which would block or never end) is refused, not read."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    regular_file(path, "backbone.weights file")
    return _digest_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TaskConfig:
    """One task. Kind and output size come from the dataset; head, loss, metrics default by kind."""

    _shorthand: ClassVar[str] = "name"

    name: str
    kind: str | None = None
    num_outputs: int | None = bounded(None, ge=1)
    head: str | None = None
    loss: str | None = None
    metrics: tuple[str, ...] = ()
    weight: float = bounded(1.0, ge=0.0)

    def _validate(self) -> None:
        try:
            check_name(self.name, "name")
        except MtnasError as exc:
            raise ConfigError(str(exc)) from None
        if self.kind is not None and self.kind not in TASK_KINDS:
            raise ConfigError(
                f"kind: unknown task kind {short_repr(self.kind)}{did_you_mean(self.kind, TASK_KINDS)}; "
                f"valid: {', '.join(TASK_KINDS)}"
            )

    def _check_registered(self) -> None:
        if self.name in components.RESERVED_TASK_NAMES:
            raise ConfigError(f"name: {self.name!r} cannot be a task name (the heads' module dict uses it); rename it")
        if self.head is not None and self.head not in components.HEADS:
            valid = components.HEADS.names()
            raise ConfigError(f"head: unknown head {short_repr(self.head)}{did_you_mean(self.head, valid)}; "
                              f"valid: {', '.join(valid)}")

    @property
    def resolved(self) -> bool:
        return self.kind is not None and self.num_outputs is not None


@dataclass(frozen=True)
class RoutingConfig:
    """Limits of the search: at most ``max_branches`` groups per layer (an int or one per layer),
    and the layers at which a split may happen (``None``: all)."""

    max_branches: int | tuple[int, ...] = bounded(4, ge=1)
    branching_layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """The budget to train one fixed tree."""

    epochs: int = bounded(10, ge=1)
    batch_size: int = bounded(128, ge=1)
    lr: float = bounded(3e-3, gt=0.0)
    weight_decay: float = bounded(0.0, ge=0.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    schedule: Literal["cosine", "constant"] = "cosine"
    balancing: str = "equal"  # a loss balancer of mtnas.balancing.BALANCERS

    def _check_registered(self) -> None:
        _check_balancing("balancing", (self.balancing,))


@dataclass(frozen=True)
class SearchRanges:
    """Optuna ranges of the search hyperparameters: [low, high] (add "log" for a log scale), or
    a list of names to choose from (``balancing``).

    Checked when parsed: low <= high, low > 0 on a log scale, and both ends within the limits of
    the setting sampled (``search.<name>``, ``routing.max_branches``), so no trial gets a value the
    space itself would refuse.
    """

    max_branches: tuple[int, int] | None = None
    tau0: tuple[float, float] | None = (1.0, 4.0)
    tau_min: tuple[float, float] | None = None
    cost_weight: tuple[float, float, str] | tuple[float, float] | None = (0.05, 1.0, "log")
    routing_lr: tuple[float, float, str] | tuple[float, float] | None = None
    warmup_epochs: tuple[int, int] | None = None
    affinity_weight: tuple[float, float] | None = (0.03, 0.2)
    gain_per_cost: tuple[float, float, str] | tuple[float, float] | None = (1.0, 25.0, "log")
    balancing: tuple[str, ...] | None = None  # choices of training.balancing (categorical)

    def _validate(self) -> None:
        if self.balancing is not None and not self.balancing:
            raise ConfigError("balancing: give at least one choice, or null to keep training.balancing")
        for f in dataclasses.fields(self):
            spec = getattr(self, f.name)
            if spec is not None and f.name != "balancing":
                _check_range(f.name, spec)

    def _check_registered(self) -> None:
        if self.balancing:
            _check_balancing("balancing", self.balancing)


def _check_range(name: str, spec: tuple[Any, ...]) -> None:
    """``[low, high]`` or ``[low, high, "log"]``, sampling only values that setting ``name`` accepts."""
    low, high, *scale = spec
    if scale and scale[0] != "log":
        raise ConfigError(f"{name}: the third item is the scale and must be 'log', got {short_repr(scale[0])}")
    if low > high:
        raise ConfigError(f"{name}: low {low} is above high {high}; give [low, high]")
    if scale and low <= 0:
        raise ConfigError(f"{name}: a log scale needs low > 0, got {low}")
    owner = RoutingConfig if name == "max_branches" else SearchConfig  # the setting a trial samples
    limits = next(f.metadata for f in dataclasses.fields(owner) if f.name == name)
    check_limits((low, high), limits, name)


def _check_balancing(key: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in components.BALANCERS:
            raise ConfigError(
                f"{key}: unknown loss balancing {short_repr(name)}{did_you_mean(name, components.BALANCERS.names())}; "
                f"valid: {', '.join(components.BALANCERS.names())}"
            )


@dataclass(frozen=True)
class SearchConfig:
    """One differentiable search: its budget and hyperparameters (Optuna may sample them)."""

    epochs: int = bounded(20, ge=1)
    warmup_epochs: int = bounded(8, ge=0)
    tau0: float = bounded(2.0, gt=0.0)
    tau_min: float = bounded(0.2, gt=0.0)
    cost_weight: float = bounded(0.2, ge=0.0)
    cost_metric: Literal["flops", "params"] = "flops"
    routing_lr: float = bounded(0.05, gt=0.0)
    holdout: float = bounded(0.2, gt=0.0, lt=1.0)
    method: str = "trained"
    affinity_weight: float = bounded(0.1, ge=0.0)
    gain_per_cost: float = bounded(5.0, ge=0.0)  # trained methods: delta-m points per all-shared net of extra cost
    budget: float = bounded(3.0, gt=0.0)  # budgeted search: trainings of the all-shared tree at proxy_epochs it may spend
    proposers: tuple[str, ...] = ("pair_model", "depth", "two_level", "agreement")  # budgeted search, in order
    trials: int = bounded(8, ge=1)
    proxy_epochs: int | None = bounded(None, ge=1)  # None: training.epochs (trees learn as in a real training)
    short_epochs: int | None = bounded(None, ge=1)  # None: a fifth of the proxy budget (trained: short trainings)
    stable_epochs: int | None = bounded(None, ge=1)  # stop once the argmax tree stayed unchanged this many routing epochs
    pruner: str | None = None  # stop a trial's proxy training once it is clearly dominated (see mtnas.study)
    ranges: SearchRanges = field(default_factory=SearchRanges)
    _renamed: ClassVar[dict[str, str]] = {"grouping_epochs": "short_epochs"}

    def _validate(self) -> None:
        if self.tau_min > self.tau0:
            raise ConfigError(f"tau_min: must be <= tau0 ({self.tau0}), got {self.tau_min}")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"warmup_epochs: must be < epochs ({self.epochs}), got {self.warmup_epochs}")


@dataclass(frozen=True)
class SearchSpace:
    """A whole search space; see the README's YAML reference for every key."""

    dataset: DatasetConfig
    backbone: BackboneConfig
    tasks: tuple[TaskConfig, ...]
    name: str = ""  # defaults to the YAML file's stem
    description: str = ""
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    seed: int = bounded(0, ge=0, le=MAX_SEED)
    input_shape: tuple[int, ...] | None = bounded(None, ge=1)

    def _validate(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: a space needs at least one task")
        if len(self.tasks) > MAX_TASKS:
            raise ConfigError(f"tasks: {len(self.tasks)} tasks, more than the {MAX_TASKS} mtnas searches")
        repeated = sorted(n for n, count in Counter(self.task_names).items() if count > 1)
        if repeated:
            raise ConfigError(f"tasks: task names repeat: {short_repr(repeated)}")

    def _check_registered(self) -> None:
        """What depends on the backbone's layers (a library backbone writes its default ones in)."""
        max_b = self.routing.max_branches
        if isinstance(max_b, tuple) and len(max_b) != self.num_layers:
            raise ConfigError(
                f"routing.max_branches: {len(max_b)} values for {self.num_layers} layers; give one per layer or a single int"
            )
        for layer in self.routing.branching_layers or ():
            if not 0 <= layer < self.num_layers:
                raise ConfigError(f"routing.branching_layers: layer {layer} is outside 0..{self.num_layers - 1}")
        if self.input_shape is not None:  # a resolved space (an arch.json's): its model must be buildable
            try:
                plans = self._check_backbone(self.input_shape)
            except MtnasError as exc:
                raise ConfigError(f"input_shape: {exc}") from None
            self._check_heads(plans[-1].out_shape, ConfigError)

    def _check_backbone(self, input_shape: tuple[int, ...], *, pretrained: bool = False) -> list[Any]:
        """The backbone's layer plans, after checking they fit ``input_shape`` and are of a size mtnas
        builds (and, with ``pretrained``, that a library model's pretrained weights load: an error
        now, not in a trial)."""
        if not input_shape or len(input_shape) > 8:
            raise MtnasError(f"an input shape has 1 to 8 dimensions, got {short_repr(input_shape)}")
        plans = self.backbone.plan(tuple(input_shape), pretrained=pretrained)
        components.check_backbone_size(plans, tuple(input_shape))
        return plans

    def _check_heads(self, features: tuple[int, ...], error: type[MtnasError] = MtnasError) -> None:
        """Each resolved task's head is of a size mtnas builds (an arch.json may claim 10^15 classes)."""
        out_size = tuple(self.input_shape[-2:]) if self.input_shape and len(self.input_shape) == 3 else None
        for i, task in enumerate(self.tasks):
            if task.kind is None or task.num_outputs is None:
                continue
            head = task.head or KIND_DEFAULTS[task.kind][0]
            try:
                components.check_head_size(head, task.kind, tuple(features), task.num_outputs,
                                           out_size if task.kind in components.DENSE_KINDS else None)
            except MtnasError as exc:
                raise error(f"tasks[{i}] ({short_text(task.name)}).num_outputs: {exc}") from None

    # -- derived values ------------------------------------------------------------------------

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def num_layers(self) -> int:
        return len(self.backbone.layers)

    @property
    def branches_per_layer(self) -> tuple[int, ...]:
        """K_l for each layer: at most this many task groups at layer l."""
        max_b = self.routing.max_branches
        per_layer = max_b if isinstance(max_b, tuple) else (max_b,) * self.num_layers
        return tuple(min(k, len(self.tasks)) for k in per_layer)

    @property
    def can_branch(self) -> tuple[bool, ...]:
        """Whether a split may happen at each layer."""
        allowed = self.routing.branching_layers
        return tuple(allowed is None or layer in allowed for layer in range(self.num_layers))

    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise MtnasError(f"unknown task {short_repr(name)}{did_you_mean(name, self.task_names)}; "
                         f"tasks: {', '.join(self.task_names)}")

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)

    @property
    def content_hash(self) -> str:
        """A digest of the whole space but its description (search settings included)."""
        return self._digest(drop=("description",))

    @property
    def training_hash(self) -> str:
        """A digest of everything that shapes a trained tree's result: the space without its
        ``search`` section, which no training reads (the search's budget reaches a training as
        ``training.epochs``, ``mtnas.train.proxy_space``). The cache key of baselines and trained
        trees, so searches with other search settings, the trials of a study and every method
        share what one of them trained."""
        return self._digest(drop=("description", "search"))

    @property
    def unit_hash(self) -> str:
        """``training_hash`` without ``training.epochs``: how a tree is trained, not for how long.
        The key of a unit of trained evidence (``mtnas.train.Evidence``), which names its own
        epochs, so a tree trained for 10 epochs is one unit whether the space that asks for it
        trains for 10 (its proxy space) or for 50."""
        return self._digest(drop=("description", "search"), training_drop=("epochs",))

    def _digest(self, drop: tuple[str, ...], training_drop: tuple[str, ...] = ()) -> str:
        data = self.to_dict()
        for key in drop:
            data.pop(key, None)
        for key in training_drop:
            data["training"].pop(key, None)
        if self.backbone.weights:  # the pretrained file's content, not only its path, shapes results
            data["backbone_weights_sha256"] = _file_digest(self.backbone.weights)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def with_budget(self, epochs: int) -> SearchSpace:
        """This space with every budget shrunk to ``epochs`` (training and proxy epochs; a search
        of ``2 * epochs`` with ``epochs`` of warm-up): a quick look, not a result to trust."""
        if epochs < 1:
            raise MtnasError(f"with_budget: epochs must be >= 1, got {epochs}")
        search = replace(self.search, epochs=2 * epochs, warmup_epochs=epochs, proxy_epochs=epochs,
                         short_epochs=None)
        return replace(self, training=replace(self.training, epochs=epochs), search=search)

    @property
    def proxy_epochs(self) -> int:
        """The epochs every tree a search compares is trained for: ``search.proxy_epochs``, by
        default the training budget itself (evidence from trainings long enough for each task to
        learn; a shorter budget favours the tasks that learn fast)."""
        return self.search.proxy_epochs or self.training.epochs

    @property
    def short_epochs(self) -> int:
        """The epochs of the whole schedule the trained search's short trainings run for (its depth
        and hierarchy candidates, trained before it compares them): ``search.short_epochs``, by
        default a fifth of ``proxy_epochs``; their scores are scaled to the whole budget's by the
        trees trained for both (``mtnas.search._trained``)."""
        return self.search.short_epochs or max(1, round(self.proxy_epochs / 5))

    @property
    def is_resolved(self) -> bool:
        return self.input_shape is not None and all(t.resolved for t in self.tasks)

    # -- completion against the data -----------------------------------------------------------

    def resolve(self, bundle: DatasetBundle) -> SearchSpace:
        """This space with task kinds, sizes, defaults and the input shape taken from ``bundle``."""
        known = {t.name: t for t in bundle.tasks}
        tasks = []
        for i, task in enumerate(self.tasks):
            where = f"tasks[{i}] ({short_text(task.name)})"
            if task.name not in known:
                raise MtnasError(
                    f"{where}: the dataset has no task {short_repr(task.name)}{did_you_mean(task.name, known)}; "
                    f"its tasks: {', '.join(known)}"
                )
            info = known[task.name]
            for key, wrote, actual in (("kind", task.kind, info.kind), ("num_outputs", task.num_outputs, info.num_outputs)):
                if wrote is not None and wrote != actual:
                    raise MtnasError(f"{where}.{key}: the space says {short_repr(wrote)}, the dataset gives {actual!r}")
            head, loss, metrics = KIND_DEFAULTS[info.kind]
            full = replace(
                task,
                kind=info.kind,
                num_outputs=info.num_outputs,
                head=task.head or head,
                loss=task.loss or loss,
                metrics=task.metrics or metrics,
            )
            _check_components(full, where)
            tasks.append(full)
        resolved = replace(self, tasks=tuple(tasks), input_shape=tuple(bundle.input_shape),
                           backbone=self.backbone.with_library_version())
        plans = resolved._check_backbone(resolved.input_shape, pretrained=True)  # shapes fit, a size mtnas builds
        resolved._check_heads(plans[-1].out_shape)
        return resolved


def _check_components(task: TaskConfig, where: str) -> None:
    try:
        components.HEADS.get_for_kind(task.head, task.kind, verb="serve")
    except MtnasError as exc:
        raise MtnasError(f"{where}: {exc}") from None
    try:
        components.get_loss(task.loss, task.kind)
        for m in task.metrics:
            components.get_metric(m, task.kind)
    except MtnasError as exc:
        raise MtnasError(f"{where}: {exc}") from None
