"""Built-in datasets (no download) and the loader for a user's own dataset factory.

Every dataset is a function ``make_<name>(*, seed=0, **sizes) -> DatasetBundle`` registered in
``DATASETS``; ``build_dataset`` is the one entry point, for a registered name or a
"pkg.module:function" factory. Built-ins: ``multi_digits`` (two digits side by side),
``digit_gratings`` (digits under gratings, with a planted task grouping) and ``synth_scenes``
(rendered scenes with dense tasks). Real benchmarks read from a folder the user gives
(``root``; nothing is downloaded): ``nyuv2`` and ``cityscapes`` (MTAN's preprocessed ``.npy``
layout) and ``celeba`` (the original release); a missing folder raises ``DataNotFoundError``.
"""

from mtnas.datasets._celeba import CELEBA_ATTRIBUTES, make_celeba
from mtnas.datasets._cityscapes import make_cityscapes
from mtnas.datasets._digit_gratings import make_digit_gratings
from mtnas.datasets._factory import load_factory
from mtnas.datasets._multi_digits import make_multi_digits
from mtnas.datasets._npy_layout import IGNORE_INDEX, DataNotFoundError
from mtnas.datasets._nyuv2 import make_nyuv2
from mtnas.datasets._registry import DATASETS, build_dataset, list_datasets
from mtnas.datasets._synth_attributes import make_synth_attributes
from mtnas.datasets._synth_scenes import make_synth_scenes

__all__ = [
    "DATASETS",
    "list_datasets",
    "build_dataset",
    "load_factory",
    "make_multi_digits",
    "make_digit_gratings",
    "make_synth_scenes",
    "make_synth_attributes",
    "make_nyuv2",
    "make_cityscapes",
    "make_celeba",
    "CELEBA_ATTRIBUTES",
    "IGNORE_INDEX",
    "DataNotFoundError",
]
