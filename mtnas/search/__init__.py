"""One search: the search methods (a registry), the routing supernet with its learnable sharing
routes, published trainings in a trainings table, the partitions of tasks and the one routine that
finds the best by a score, and ``search_tree``.

The trained evidence the default method decides on is a training cache and lives in
``mtnas.train`` (``Evidence``, ``Unit``, the evidence stores); its names are re-exported here, where
the search methods use them.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._budgeted": ("RUNGS", "BudgetedSearch", "rung_epochs",),
    "._catalog": ("METHODS", "SearchMethod", "check_method", "check_search_space", "search_tree",),
    "._differentiable": ("SupernetSearch", "search_supernet", "split_holdout", "temperature",),
    "._dmtg": ("DMTG",),
    "mtnas.train._evidence": ("EVIDENCE_FORMAT", "AnsweringStore", "Evidence", "Trained", "Unit", "default_store",),
    "mtnas.train._store": ("EvidenceStore", "Holder", "LocalStore",),
    "._gradients": ("gradient_agreement",),
    "._scores": ("references", "relative_scores", "task_terms",),
    "._table": ("TABLE_FORMAT", "TableStore", "TrainingTable", "read_table", "table_space",),
    "._fixed_routing": ("FixedTreeMethod", "encode_tree", "tree_fits",),
    "._methods": (
        "Affinity", "Plain", "RoutingContext", "RoutingMethod", "affinity_prior", "co_assignment", "path_probs",
        "scaled_affinity",
    ),
    "._pairs": ("PAIR_TASKS", "PairModel",),
    "._proposers": ("PROPOSERS", "Proposal", "Proposer", "check_proposers",),
    "._partitions": (
        "EXHAUSTIVE", "agglomerative", "all_partitions", "best_partition", "canonical", "climb", "count_partitions",
        "groups_of", "labels_of", "partition_labels",
    ),
    "._result": ("SearchResult",),
    "._candidate_trials": ("CANDIDATE_ATTR", "CandidateTrials", "InStudy",),
    "._rung_pruner": ("RungPruner",),
    "._routing": ("DerivedTree", "Routing", "RoutingSample", "effective_branches", "tree_of",),
    "._rsa": ("RepresentationSimilarity", "rdm", "rsa_dissimilarity",),
    "._supernet": ("Supernet",),
    "._tag": ("TaskAffinityGrouping", "mean_tag_affinity", "tag_affinity", "tag_total", "train_with_affinity",),
    "._trained": ("PairsSelection", "TrainedSearch", "agreement_grouping", "pair_model",),
})
