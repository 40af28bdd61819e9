"""A planted easy case: two tasks that each need the full capacity of a 2-unit layer."""

import torch

from mtnas.data import DatasetBundle, TaskData, TaskInfo
from mtnas.data.datasets import register_dataset


@register_dataset("conflict_data")
def make(*, seed: int = 0, n: int = 1200) -> DatasetBundle:
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    targets = {"left": torch.relu(x[:, 0:2]) * 2, "right": torch.relu(x[:, 2:4]) * 2}
    data = TaskData(x, targets)
    a, b = int(0.7 * n), int(0.85 * n)
    tasks = (TaskInfo("left", "regression", 2), TaskInfo("right", "regression", 2))
    return DatasetBundle(data.select(slice(0, a)), data.select(slice(a, b)), data.select(slice(b, n)), tasks)
