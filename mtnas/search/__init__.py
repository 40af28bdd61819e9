"""One search: the search methods (a registry), the trained evidence of the default method (or
published trainings in a trainings table), the routing supernet with its learnable sharing routes,
and ``search_tree``.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._catalog": ("METHODS", "SearchMethod", "check_method", "check_search_space", "search_tree",),
    "._differentiable": ("SupernetSearch", "search_supernet", "split_holdout", "temperature",),
    "._dmtg": ("DMTG",),
    "._evidence": ("EVIDENCE_FORMAT", "AnsweringStore", "Evidence", "Trained", "Unit", "default_store",),
    "._gradients": ("gradient_agreement",),
    "._scores": ("references", "relative_scores", "task_terms",),
    "._store": ("EvidenceStore", "Holder", "LocalStore",),
    "._surrogate": ("PairSurrogate",),
    "._table": ("TABLE_FORMAT", "TableStore", "TrainingTable", "read_table", "table_space",),
    "._fixed_routing": (
        "EXHAUSTIVE", "FixedTreeMethod", "best_partition", "encode_tree", "relative_cost", "tree_fits",
    ),
    "._methods": (
        "Affinity", "Plain", "RoutingContext", "RoutingMethod", "affinity_prior", "co_assignment", "path_probs",
        "scaled_affinity",
    ),
    "._pairs": ("PAIR_TASKS", "PairModel", "all_partitions",),
    "._result": ("SearchResult",),
    "._routing": ("DerivedTree", "Routing", "RoutingSample", "effective_branches", "tree_of",),
    "._rsa": ("RepresentationSimilarity", "rdm", "rsa_dissimilarity",),
    "._supernet": ("Supernet",),
    "._tag": ("TaskAffinityGrouping", "tag_affinity", "tag_total", "train_with_affinity",),
    "._trained": ("PairsSelection", "TrainedSearch", "agreement_grouping", "pair_model",),
})
