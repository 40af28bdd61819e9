"""A user's own dataset for mtnas: two regression targets and one class from random features.

Load it on purpose, then name it in a space: ``mtnas --plugins examples.my_dataset train examples/my_space.yaml``.
"""

import torch

import mtnas
from mtnas.data import DatasetBundle, TaskData, TaskInfo


@mtnas.register_dataset("my_dataset")
def make(*, seed: int = 0, n: int = 600, features: int = 16) -> DatasetBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    targets = {
        "total": x[:, :4].sum(1, keepdim=True),  # regression: (N, 1)
        "spread": x[:, 4:8].std(1, keepdim=True),  # regression: (N, 1)
        "sign": (x[:, 0] > 0).long(),  # classification: (N,)
    }
    data = TaskData(x, targets)
    a, b = int(0.6 * n), int(0.8 * n)
    return DatasetBundle(
        train=data.select(slice(0, a)),
        val=data.select(slice(a, b)),
        test=data.select(slice(b, n)),
        tasks=(
            TaskInfo("total", "regression", 1, "sum of the first four features"),
            TaskInfo("spread", "regression", 1, "spread of features 4-7"),
            TaskInfo("sign", "classification", 2, "the first feature is positive"),
        ),
    )
