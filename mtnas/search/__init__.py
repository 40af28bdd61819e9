"""One differentiable search: learnable sharing routes, the routing supernet, the routing methods
(a registry) and the search loop that derives a tree.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._differentiable": ("SearchResult", "search_tree", "split_holdout", "temperature",),
    "._fixed_routing": (
        "EXHAUSTIVE", "FixedTreeMethod", "best_partition", "encode_tree", "relative_cost", "tree_fits",
    ),
    "._methods": (
        "METHODS", "RoutingContext", "RoutingMethod", "affinity_prior", "check_method", "check_search_space",
        "co_assignment", "path_probs", "scaled_affinity",
    ),
    "._routing": ("DerivedTree", "Routing", "RoutingSample", "effective_branches", "tree_of",),
    "._rsa": ("RepresentationSimilarity", "rdm", "rsa_dissimilarity",),
    "._supernet": ("Supernet",),
    "._tag": ("TaskAffinityGrouping", "tag_affinity",),
})
