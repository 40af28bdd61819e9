"""The training engine and everything that runs on it: fixed trees (``mtnas train``), the
single-task baselines and delta-m, trained evidence (units of training, each trained once and
shared through an evidence store: a training cache for searches and studies; trainings that stop
and resume from a checkpoint), and ``mtnas retrain`` (devices, precision, DDP, checkpoints).
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._baselines": ("SUM_OF_SOLO_LOSSES", "Baselines", "cache_dir", "compute_baselines", "proxy_space",),
    "._batched": (
        "SingleTaskStack", "TreeStack", "single_task_space", "subset_space", "train_single_tasks",
        "train_subset_networks", "train_trees", "tree_resume_problem",
    ),
    "._cached": ("checked_result", "read_result", "write_result",),
    "._delta_m": ("delta_m", "per_task_delta",),
    "._resume": ("Checkpoint", "load_resume_state", "save_resume_state",),
    "._evidence": ("EVIDENCE_FORMAT", "AnsweringStore", "Evidence", "Trained", "Unit", "default_store",),
    "._store": ("CLOCK_SKEW", "EvidenceStore", "Holder", "LocalStore",),
    "._device": (
        "DTYPES", "Dist", "PRECISIONS", "autocast", "pick_device", "process_group", "resolve_precision",
        "select_device",
    ),
    "._engine": (
        "Engine", "NonFiniteLossError", "OPTIMIZERS", "SCHEDULES", "TrainResult", "check_finite", "train_model",
    ),
    "._fixed_tree": ("TreeResult", "mean_metric", "train_tree", "train_tree_model",),
    "._prefetch": ("prefetch_batches",),
    "._reports": ("BaselinesReport", "TrainReport", "compare_rows", "resolve_tree", "run_baselines", "run_train",),
    "._retrain": ("DATA_PLACEMENTS", "INITS", "RetrainReport", "curve_data", "data_placement", "retrain",),
    "._tasks": ("TaskMetrics", "evaluate", "task_losses",),
    "._trackers": (
        "TRACKERS", "RunLog", "TrackedRun", "Tracker", "TrackerType", "Tracking", "active_tracking", "check_trackers",
        "epoch_scalars", "mlflow_uri", "run_name", "training_logs", "tracking",
    ),
    "._threads": ("THREADS_ENV", "Threads", "cpu_threads", "physical_cores", "use_cpu_threads",),
})
