"""Branching trees (which tasks share which backbone layers) and ``arch.json``, the versioned file
that carries one with its space. Pure data: no torch.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._architecture": ("ARCH_FORMAT", "ARCH_MAX_BYTES", "ARCH_VERSION", "Architecture",),
    "._branching": (
        "BranchingTree", "Group", "InvalidTreeError", "NAMED_TREES", "Node", "Partition", "parse_tree_spec",
    ),
})
