"""``mtnas export``: a trial of a run as arch.json, picture and inherited weights; a trained model
as ONNX or a ``torch.export`` program.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._deploy": ("DEPLOY_FORMATS", "export_model",),
    "._trial": ("ExportReport", "export_trial",),
})
