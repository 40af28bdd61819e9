"""mtnas: multi-task neural architecture search — find which layers tasks should share.

The public API, importable from ``mtnas`` directly (each name loads its module on first use, so
``import mtnas`` stays cheap)::

    import mtnas

    space, bundle = mtnas.load_resolved("digit_gratings")     # a search space and its dataset
    result = mtnas.search_tree(space, bundle, seed=1)          # one search: trained candidate trees
    run, study = mtnas.run_search(space, name="dg1")           # an Optuna study in runs/dg1
    front = mtnas.front_trees(study)                           # its searched Pareto trees, as objects
    model = mtnas.load_model("out/arch.json", "out/retrain/weights.safetensors")  # nn.Module

    @mtnas.register_dataset("my_data")                         # your own dataset (and backbone:
    def make(*, seed=0, n=600) -> mtnas.DatasetBundle: ...     # register_backbone), by intent only

The packages, bottom to top (each imports only those below it): ``core``, ``tree``, ``viz``,
``data``, ``nn``, ``space``, ``model``, ``train``, ``search``, ``study``, ``export``, ``report``,
``cli``.
"""

from mtnas.core._lazy import lazy_exports
from mtnas.core._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "mtnas.core": ("MtnasError", "bounded", "load_plugins"),
    "mtnas.tree": ("Architecture", "BranchingTree"),
    "mtnas.data": ("DatasetBundle", "TaskData", "TaskInfo"),
    "mtnas.data.datasets": ("register_dataset",),
    "mtnas.nn": ("BackboneType", "BlockPlan", "register_backbone"),
    "mtnas.space": ("SearchSpace", "list_spaces", "load_resolved", "load_space"),
    "mtnas.model": ("BranchedNet", "load_model"),
    "mtnas.train": ("retrain", "train_tree"),
    "mtnas.search": ("SearchResult", "search_tree"),
    "mtnas.study": ("FrontTree", "SearchRun", "front_trees", "load_study", "run_search", "run_worker"),
    "mtnas.export": ("export_model", "export_trial"),
    "mtnas.report": ("plot_source", "write_report"),
})
__all__ = [*__all__, "__version__"]
