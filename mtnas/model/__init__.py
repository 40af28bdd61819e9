"""The network of one tree (``BranchedNet``), its cost, pretrained backbone weights, and weights
and checkpoints on disk (safetensors; never pickle). ``load_model`` turns an arch.json into a module.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._branched": ("BranchedNet", "build_heads",),
    "._checkpoint": (
        "WEIGHTS_FORMAT", "WEIGHTS_VERSION", "find_checkpoint", "fit_problems", "load_checkpoint", "load_into",
        "load_state", "load_weights", "read_safetensors", "remove_checkpoint", "save_checkpoint", "save_state", "save_weights",
        "tensors_sha256", "torch_load_checked",
    ),
    "._cost": ("Cost", "count_flops", "count_params", "relative_cost", "tree_cost",),
    "._inherit": ("inherit_state", "refines",),
    "._loading": ("arch_space", "load_model",),
    "._pretrained": (
        "BACKBONE_FORMAT", "WEIGHTS_MAPS", "load_pretrained", "read_backbone_weights", "save_backbone_weights",
    ),
})
