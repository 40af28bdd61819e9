"""``search.stable_epochs``: the search stops once its argmax tree has been unchanged that long."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mtnas.search import search_tree, temperature
from mtnas.search._routing import Routing
from mtnas.viz import draw_routing, routing_evolution
from tests._spaces import load_builtin

# 9 routing epochs on 96 images: the argmax tree settles for a few epochs, then changes again
SEARCH = {"epochs": 10, "warmup_epochs": 1, "routing_lr": 0.1, "method": "affinity"}  # a supernet search
SEED = 0


@pytest.fixture(scope="module")
def tiny():
    space, bundle = load_builtin("digit_gratings")
    return replace(space, search=replace(space.search, **SEARCH)), replace(bundle, train=bundle.train.select(slice(0, 96)))


def _search(space, bundle, monkeypatch: pytest.MonkeyPatch, stable_epochs: int | None):
    """The search, and the key of the argmax tree derived after each of its routing epochs."""
    keys: list[str] = []
    derive = Routing.derive

    def spy(self):
        derived = derive(self)
        keys.append(derived.tree.key)
        return derived

    monkeypatch.setattr(Routing, "derive", spy)
    cfg = replace(space.search, stable_epochs=stable_epochs)
    result = search_tree(space, bundle, seed=SEED, hparams=cfg)
    monkeypatch.setattr(Routing, "derive", derive)
    return result, keys[:-1]  # the last call derives the result's tree


def _first_stable(keys: list[str], k: int) -> int | None:
    """Index of the first routing epoch whose tree equals those of the k epochs before it."""
    return next((i for i in range(k, len(keys)) if len(set(keys[i - k : i + 1])) == 1), None)


@pytest.fixture(scope="module")
def full(tiny):
    with pytest.MonkeyPatch.context() as mp:
        return _search(*tiny, mp, None)


def test_without_stable_epochs_every_epoch_runs(tiny, full) -> None:
    space, _ = tiny
    result, keys = full
    assert result.stopped_epoch is None and result.epochs_run == space.search.epochs
    assert all(len(v) == space.search.epochs for v in result.routing.values())
    assert len(keys) == space.search.epochs - space.search.warmup_epochs  # one tree per routing epoch
    # the recorded counter says for how long the argmax tree had not changed after each epoch
    warmup = space.search.warmup_epochs
    expected = [0] * warmup + [0]
    for a, b in zip(keys, keys[1:]):
        expected.append(expected[-1] + 1 if a == b else 0)
    assert result.routing["unchanged"].tolist() == expected


@pytest.mark.parametrize("k", [1, 2])
def test_the_search_stops_once_the_tree_was_unchanged_k_epochs(tiny, full, k: int, monkeypatch) -> None:
    space, bundle = tiny
    whole, full_keys = full
    first = _first_stable(full_keys, k)
    assert first is not None and first < len(full_keys) - 1, "the tiny search should settle early"
    result, keys = _search(space, bundle, monkeypatch, k)
    stop = space.search.warmup_epochs + first
    assert result.stopped_epoch == stop and result.epochs_run == stop + 1
    assert keys == full_keys[: first + 1]  # the same search up to there, then no more epochs
    assert result.tree.key == full_keys[first]
    for name, values in result.routing.items():
        if name != "epoch_seconds":
            assert np.array_equal(values, whole.routing[name][: stop + 1]), name
    # tau follows the planned schedule: the early stop ends hotter than a search planned this short
    assert result.routing["tau"][-1] == temperature(stop, space.search) > space.search.tau_min
    assert temperature(stop, replace(space.search, epochs=stop + 1)) == pytest.approx(space.search.tau_min)


def test_stable_epochs_beyond_the_budget_runs_every_epoch(tiny, full, monkeypatch) -> None:
    space, bundle = tiny
    result, _ = _search(space, bundle, monkeypatch, space.search.epochs)
    assert result.stopped_epoch is None and result.epochs_run == space.search.epochs
    assert result.tree == full[0].tree


def test_the_routing_plot_reads_a_shortened_history(tiny, monkeypatch, tmp_path: Path) -> None:
    space, bundle = tiny
    result, _ = _search(space, bundle, monkeypatch, 1)
    evolution = routing_evolution(result.save_routing(tmp_path / "routing.npz"))
    assert len(evolution.epochs) == result.epochs_run < space.search.epochs
    assert evolution.settled_epoch is not None and evolution.settled_epoch <= result.stopped_epoch
    picture = draw_routing(evolution, tmp_path / "routing.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
