"""Built-in datasets (no download) and the registry of a user's own.

Every dataset is a function ``make_<name>(*, seed=0, **sizes) -> DatasetBundle`` registered in
``DATASETS`` (built-ins) or with ``register_dataset`` (a user's, in a module loaded on purpose, or
a ``mtnas.datasets`` entry point); ``build_dataset`` is the one entry point, for a registered name
or the "pkg.module:function" path of a registered function. Built-ins: ``multi_digits`` (two digits side by side),
``digit_gratings`` (digits under gratings, with a planted task grouping), ``multi_digit_gratings``
(two digits side by side under one grating: a planted tree of two levels), ``digit_grating_levels``
(the same plus a brightness level: three factors of unequal difficulty), ``digit_grating_kinds``
(the same two factors read by tasks of four kinds and very different loss scales) and ``synth_scenes``
(rendered scenes with dense tasks). Real benchmarks read from a folder the user gives
(``root``; nothing is downloaded): ``nyuv2`` and ``cityscapes`` (MTAN's preprocessed ``.npy``
layout) and ``celeba`` (the original release); a missing folder raises ``DataNotFoundError``.
"""

from mtnas.data.datasets._celeba import CELEBA_ATTRIBUTES, make_celeba
from mtnas.data.datasets._cityscapes import make_cityscapes
from mtnas.data.datasets._digit_grating_kinds import make_digit_grating_kinds
from mtnas.data.datasets._digit_grating_levels import make_digit_grating_levels
from mtnas.data.datasets._digit_gratings import make_digit_gratings
from mtnas.data.datasets._multi_digit_gratings import make_multi_digit_gratings
from mtnas.data.datasets._multi_digits import make_multi_digits
from mtnas.data.datasets._npy_layout import IGNORE_INDEX, DataNotFoundError
from mtnas.data.datasets._nyuv2 import make_nyuv2
from mtnas.data.datasets._registry import (
    DATASETS,
    USER_DATASETS,
    build_dataset,
    dataset_function,
    list_datasets,
    register_dataset,
)
from mtnas.data.datasets._synth_attributes import make_synth_attributes
from mtnas.data.datasets._synth_scenes import make_synth_scenes

__all__ = [
    "CELEBA_ATTRIBUTES",
    "DATASETS",
    "IGNORE_INDEX",
    "USER_DATASETS",
    "DataNotFoundError",
    "build_dataset",
    "dataset_function",
    "list_datasets",
    "make_celeba",
    "make_cityscapes",
    "make_digit_grating_kinds",
    "make_digit_grating_levels",
    "make_digit_gratings",
    "make_multi_digit_gratings",
    "make_multi_digits",
    "make_nyuv2",
    "make_synth_attributes",
    "make_synth_scenes",
    "register_dataset",
]
