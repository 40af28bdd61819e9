"""Delta-m: the mean relative gain of a multi-task model over single-task baselines.

``delta_m = 100 / T * sum_t mean_m (-1)^{lower_is_better(m)} (M_m - B_m) / B_m``
(Maninis et al. 2019; Vandenhende et al. 2021). Positive is better than the baselines.
"""

from __future__ import annotations

from collections.abc import Mapping

from mtnas.core import MtnasError
from mtnas.nn import get_metric
from mtnas.space import SearchSpace

__all__ = ["delta_m", "per_task_delta"]

Metrics = Mapping[str, Mapping[str, float]]


def per_task_delta(metrics: Metrics, baselines: Metrics, space: SearchSpace) -> dict[str, float]:
    """Each task's mean signed relative change (in percent) over its metrics."""
    out = {}
    for task in space.tasks:
        terms = []
        for m in task.metrics:
            try:
                value, base = metrics[task.name][m], baselines[task.name][m]
            except KeyError:
                raise MtnasError(f"no {m!r} result for task {task.name!r} to compute delta-m") from None
            sign = 1.0 if get_metric(m, task.kind).higher_is_better else -1.0
            terms.append(sign * (value - base) / (abs(base) if base else 1e-12))
        out[task.name] = 100.0 * sum(terms) / len(terms)
    return out


def delta_m(metrics: Metrics, baselines: Metrics, space: SearchSpace) -> float:
    """Delta-m in percent of ``metrics`` against single-task ``baselines``."""
    deltas = per_task_delta(metrics, baselines, space)
    return sum(deltas.values()) / len(deltas)
