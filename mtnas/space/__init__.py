"""Search spaces: a built-in name or a YAML file -> a frozen, typed ``SearchSpace``, resolved
against its dataset (task kinds, sizes, input shape) so that it alone rebuilds a model; and the
trade-off of quality and cost its ``search.gain_per_cost`` sets (``trade_off_score``).
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._builtin": ("BUILTIN_DIR", "builtin_paths", "list_spaces", "read_space_data",),
    "._loading": (
        "SPACE_MAX_BYTES", "YAML_MAX_DEPTH", "YAML_MAX_NODES", "build_space_dataset", "load_resolved", "load_space",
        "load_yaml_text", "space_from_dict",
    ),
    "._schema": (
        "BackboneConfig", "DatasetConfig", "KIND_DEFAULTS", "MAX_LAYERS", "MAX_TASKS", "RoutingConfig",
        "SearchConfig", "SearchRanges", "SearchSpace", "TaskConfig", "TrainingConfig", "WEIGHTS_SUFFIXES",
    ),
    "._trade_off": ("trade_off_score",),
})
