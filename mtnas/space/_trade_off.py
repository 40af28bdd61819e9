"""The trade-off between a tree's quality and its cost that the trained searches maximise.

A tree's score is its quality term (delta-m, or a mean task term against the best trees seen:
``mtnas.search._scores``), in points, less ``gain_per_cost`` points for each all-shared network's
worth of extra cost: ``term - gain_per_cost * (relative_cost - 1)``, the relative cost 1 for the
all-shared tree (``mtnas.model.relative_cost``). ``search.gain_per_cost`` is what a tree must buy
with each extra network; a study's trials sample it (``search.ranges.gain_per_cost``) so its front
holds the trees from "share everything" to "split early". The supernet-era methods (``tag``,
``rsa``) weigh cost by ``search.cost_weight`` the same way.

No torch here: the study's picks (``mtnas.study.trade_off``) read it from stored trials.
"""

from __future__ import annotations

__all__ = ["trade_off_score"]


def trade_off_score(term: float, relative_cost: float, gain_per_cost: float) -> float:
    """``term`` less ``gain_per_cost`` points per all-shared network of extra cost (``relative_cost``
    1 is the all-shared tree's)."""
    return term - gain_per_cost * (relative_cost - 1.0)
