"""``mtnas search`` and ``mtnas worker``: an Optuna study of sharing trees in a run folder, its
objectives by name, its strategies and storage, its Pareto front and the picks from it.

Reading a run (``SearchRun``, ``load_study``, the front) needs Optuna only, not torch.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._artifacts": (
        "ARTIFACT_ID", "TRIAL_FILES", "artifact_cache", "check_artifact_store", "fetch_trial_file",
        "open_artifact_store", "upload_trial_files",
    ),
    "._front": (
        "FrontPoints", "FrontTree", "PICKS", "choose_trial", "front_point", "front_points", "front_trees", "knee",
        "pareto", "searched_front", "trade_off", "write_pareto",
    ),
    "._inspect": ("render_trial", "trial_details",),
    "._liveness": ("mark_alive", "reap_dead_trials", "settle", "wait_for_turn",),
    "._objective": ("FIXED", "evaluate_trial", "proxy_space",),
    "._objectives": (
        "OBJECTIVES", "Objective", "QUALITY", "cost_objective", "objective_names", "parse_objectives",
        "trial_objectives",
    ),
    "._optimize": ("run_search", "run_worker", "space_digest", "worker_command",),
    "._pool": ("RECORDER", "STUDY_DRIVERS", "StudyDriver", "run_pool",),
    "._progress": ("StudyProgress", "format_seconds", "study_eta",),
    "._pruning": ("FRONT_MARGIN", "PRUNERS", "PrunerType", "check_pruner", "epoch_monitor",),
    "._records": ("check_settings", "check_study", "check_trial",),
    "._run": (
        "INHERITED", "RUN_NAME", "SearchRun", "check_run_name", "fail_reason", "load_study", "trial_file", "trial_label",
        "trial_tree",
    ),
    "._storage": (
        "FILE_SCHEMES", "HEARTBEAT", "MAX_LOCAL_WORKERS", "absolute_url", "file_path", "heartbeat_settings", "mask_url",
        "open_storage",
    ),
    "._strategies": ("SAMPLERS", "STRATEGIES", "Strategy", "TrialContext", "trial_space",),
    "._study_store": ("StudyStore", "candidates_study_name", "evidence_study_name", "record_candidates",),
})
