"""Host-resident batches: the prefetching iterator yields exactly the batches of index selection."""

from __future__ import annotations

import torch

from mtnas.data import TaskData
from mtnas.train import prefetch_batches


def _data(n: int = 50) -> TaskData:
    g = torch.Generator().manual_seed(0)
    return TaskData(torch.randn(n, 3, 4, 4, generator=g), {"a": torch.randint(5, (n,), generator=g),
                                                           "b": torch.randn(n, 2, generator=g)},
                    {"a": torch.rand(n, generator=g) > 0.3})


def test_prefetched_batches_equal_index_selection() -> None:
    data = _data()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    batches = list(order.split(16))  # the last one is short
    got = list(prefetch_batches(data, batches, torch.device("cpu")))
    assert len(got) == len(batches)
    for batch, idx in zip(got, batches):
        want = data.select(idx)
        assert torch.equal(batch.inputs, want.inputs)
        assert all(torch.equal(batch.targets[k], want.targets[k]) for k in want.targets)
        assert torch.equal(batch.masks["a"], want.masks["a"]) and set(batch.masks) == {"a"}


def test_no_batches_yield_nothing() -> None:
    assert list(prefetch_batches(_data(), [], torch.device("cpu"))) == []
