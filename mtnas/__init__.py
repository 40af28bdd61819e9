"""mtnas: multi-task neural architecture search — find which layers tasks should share."""

__version__ = "0.1.0"
