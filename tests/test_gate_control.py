"""RandomGate: the same action as a teacher gate on samples chosen at random,
at a set rate; deterministic by (seed, epoch, index), not by batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe.gate.control import rates_from_history


def _gated(fmnist, batch_size, rate=0.3, action="fallback", epochs=1):
    gate = ap.RandomGate(rate, action=action, seed=7)
    loader = ap.Loader(fmnist, batch_size=batch_size, magnitude=14, num_workers=0, seed=2, gate=gate)
    out = {}
    for _ in range(epochs):
        for batch in loader:
            for i, g, m in zip(batch.index.tolist(), batch.gated.tolist(), batch.magnitude.tolist()):
                out[(batch.epoch, i)] = (g, m)
    return out, gate, loader


def test_the_rate_is_met_and_choices_do_not_depend_on_batching(fmnist):
    a, gate, _ = _gated(fmnist, 50)
    b, _, _ = _gated(fmnist, 100)
    share = np.mean([g for g, _ in a.values()])
    assert abs(share - 0.3) < 0.06  # 600 samples: binomial sd 0.019
    assert {k: v[0] for k, v in a.items() if k in b} == {k: v[0] for k, v in b.items() if k in a}
    assert all(m == 0.0 for g, m in a.values() if g) and all(m == 14.0 for g, m in a.values() if not g)
    assert gate.per_epoch[0][1] == sum(g for g, _ in a.values())


def test_fallback_swaps_in_the_samples_own_render_at_magnitude_0(fmnist):
    gate = ap.RandomGate(0.5, seed=1)
    loader = ap.Loader(fmnist, batch_size=64, magnitude=14, num_workers=0, seed=2, gate=gate)
    batch = next(iter(loader))
    rows = batch.gated.nonzero().flatten()
    weak = loader.render(batch.index[rows], magnitude=0.0, epoch=batch.epoch)
    assert len(rows) > 10 and torch.equal(batch.images[rows], weak.images)


def test_per_epoch_rates_from_a_gated_runs_history():
    history = [{"epoch": 0, "scored": 200, "gated": 50}, {"epoch": 1, "scored": 200, "gated": 20}]
    rates = rates_from_history(history)
    assert rates == {0: 0.25, 1: 0.1}
    gate = ap.RandomGate(rates)
    assert gate.rate(0) == 0.25 and gate.rate(1) == 0.1 and gate.rate(5) == 0.1
    with pytest.raises(ValueError, match="report.json of a gated"):
        rates_from_history([{"epoch": 0, "loss": 1.0}])


@pytest.mark.parametrize("kwargs, words", [({"rate": 1.5}, r"rate must be in \[0, 1\]"),
                                            ({"rate": 0.2, "action": "skip"}, "unknown action"),
                                            ({"rate": 0.2, "fallback": 31}, "fallback")])
def test_bad_arguments_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ap.RandomGate(**kwargs)
