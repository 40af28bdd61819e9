"""Multi-task data held as tensors (``TaskInfo``, ``TaskData``, ``DatasetBundle``); the built-in
datasets and the loader of a user's factory are in ``mtnas.data.datasets``.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._bundle": ("DatasetBundle", "DatasetError", "TaskData", "TaskInfo",),
    "._kinds": ("TASK_KINDS",),
    "._checks": ("DatasetNote", "IGNORE_INDEX", "TARGET_RULES", "TargetRule", "check_bundle",),
    "._digest": ("data_digest",),
})
