"""Network components by name, one registry each: backbones (per-layer block builders), task
heads, losses, metrics (with their direction) and loss balancers.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._backbone_types": (
        "BackboneType", "BlockPlan", "MAX_ACTIVATION", "MAX_BACKBONE_PARAMS", "ModelLibrary", "ModelSource",
        "check_backbone_size",
    ),
    "._backbones": (
        "BACKBONES", "ConvLayer", "MLPLayer", "ResNetLayer", "USER_BACKBONES", "backbone_type", "plan_backbone",
        "register_backbone",
    ),
    "._balancing": (
        "BALANCERS", "Balancer", "DWA", "Equal", "PCGrad", "Uncertainty", "make_balancer", "optimizer_params",
        "pcgrad_project", "shared_parameters",
    ),
    "._model_cut": ("ModelLayer",),
    "._timm": ("TIMM_INSTALL", "import_timm", "timm_version",),
    "._torchvision": ("TORCHVISION_INSTALL", "import_torchvision", "torchvision_version",),
    "._heads": ("DENSE_KINDS", "HEADS", "MAX_HEAD_PARAMS", "RESERVED_TASK_NAMES", "HeadType", "build_head", "check_head_size",),
    "._losses": ("LOSSES", "LossType", "get_loss",),
    "._metrics": ("METRICS", "Metric", "get_metric",),
})
