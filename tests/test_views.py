"""Multi-view batches (`Loader(views=k)`): k differently planned views of each sample per batch; and
repeated augmentation (`Loader(repeats=k)`): each sample on k ranks with k plans, the epoch length kept.

View 0 is exactly a one-view loader's batch; view v is a one-view pipeline planned from
`view_seed(seed, v)` over the same samples; batches do not depend on the worker count and resume
mid-epoch; a teacher gate's fallback re-renders each row with its own view's plan; bad input is named.
Every backend's multi-view batches are checked against the torch backend's in tests/test_parity.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_gate import gate, run, scripted_loader

import augpipe as ap
from augpipe.kernels.rng import view_seed

FIELDS = ("images", "labels", "index", "magnitude", "ops", "mags")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (200, 3, 28, 28), dtype=np.uint8), rng.integers(0, 10, 200)


def _same(a, b, fields=FIELDS):
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


def test_view_0_is_the_one_view_batch_and_each_view_its_own_seeds_plans(data):
    kw = dict(batch_size=32, num_workers=0, seed=5, magnitude=12)
    one = list(ap.Loader(data, **kw))
    three = list(ap.Loader(data, views=3, **kw))
    assert len(three) == len(one)
    for ref, b in zip(one, three):
        n = ref.size
        assert b.size == 3 * n and torch.equal(b.view, torch.arange(3).repeat_interleave(n))
        parts = [b.subset(b.view == v) for v in range(3)]
        assert _same(parts[0], ref)  # plans of a one-view loader are unchanged
        for p in parts[1:]:
            assert torch.equal(p.index, ref.index) and torch.equal(p.labels, ref.labels)
            assert not torch.equal(p.ops, ref.ops) and not torch.equal(p.images, ref.images)
        assert not torch.equal(parts[1].ops, parts[2].ops)
    # in sample order (no shuffle) view v is the one-view loader seeded view_seed(seed, v)
    kw["shuffle"] = False
    b = next(iter(ap.Loader(data, views=2, **kw)))
    other = next(iter(ap.Loader(data, **{**kw, "seed": view_seed(5, 1)})))
    assert _same(b.subset(b.view == 1), other)
    assert view_seed(5, 0) == 5 and len({view_seed(5, v) for v in range(100)}) == 100


def test_views_do_not_depend_on_workers_and_resume_mid_epoch(data):
    kw = dict(batch_size=32, seed=2, views=2, erase=ap.RandomErasing(0.5), mix=ap.MixUp(0.8))
    ref = list(ap.Loader(data, num_workers=0, **kw))
    got = list(ap.Loader(data, num_workers=2, **kw))
    assert all(_same(a, b, (*FIELDS, "view", "lam", "targets", "erased")) for a, b in zip(ref, got))
    loader = ap.Loader(data, num_workers=0, **kw)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert state["views"] == 2
    again = ap.Loader(data, num_workers=2, **kw)
    again.load_state_dict(state)
    rest = list(again)
    assert len(rest) == len(ref) - 2 and all(_same(a, b, (*FIELDS, "view", "targets")) for a, b in zip(ref[2:], rest))
    one = ap.Loader(data, num_workers=0, batch_size=32, seed=2)
    with pytest.raises(ValueError, match="views=2, this loader has views=1"):
        one.load_state_dict(state)


def test_gate_fallback_rerenders_each_row_with_its_own_views_plan():
    plain = run(scripted_loader(views=2))
    loader = scripted_loader(gate(action="fallback", fallback=0.0), views=2)
    for ref, b in zip(plain, run(loader)):
        hard = b.gated.numpy()
        assert hard[b.view == 0].any() and hard[b.view == 1].any()
        redo = loader.render(ref.index[hard], 0.0, epoch=ref.epoch, view=ref.view[hard], mix=False)
        assert torch.equal(b.images[hard], redo.images) and torch.equal(b.images[~hard], ref.images[~hard])
        assert torch.equal(b.view, ref.view)
        # view 1's rows carry view 1's plans (here: TranslateX's signs), not view 0's
        rows = (ref.view == 1).numpy()
        own = loader.render(ref.index[rows], ref.magnitude[rows], epoch=ref.epoch, view=1, mix=False)
        other = loader.render(ref.index[rows], ref.magnitude[rows], epoch=ref.epoch, view=0, mix=False)
        assert torch.equal(own.mags, ref.mags[rows]) and not torch.equal(other.mags, ref.mags[rows])


def test_bad_views_are_named(data):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="views"):
            ap.Loader(data, views=bad, num_workers=0)
    for bad in (1.5, "2", True):
        with pytest.raises((TypeError, ValueError), match="views"):
            ap.Loader(data, views=bad, num_workers=0)
    loader = ap.Loader(data, views=2, num_workers=0, batch_size=8)
    with pytest.raises(ValueError, match=r"view must be in \[0, 2\)"):
        loader.render([0, 1], view=2)
    with pytest.raises(ValueError, match="one int per index"):
        loader.render([0, 1], view=[0, 1, 1])
    with pytest.raises(ValueError, match="views > 1 and repeats > 1 need the Loader's sample order"):
        ap.Loader(data, views=2, backend="ffcv", backend_options={"order": "random"})


def _ranks(data, world, **kw):
    return [ap.Loader(data, batch_size=10, num_workers=0, seed=4, rank=r, world_size=world, **kw)
            for r in range(world)]


@pytest.mark.parametrize("world,k", [(2, 2), (4, 2), (3, 3)])
def test_repeats_put_each_sample_on_k_ranks_with_k_plans_and_keep_the_epoch_length(data, world, k):
    plain, rep = _ranks(data, world), _ranks(data, world, repeats=k)
    assert [len(x) for x in rep] == [len(x) for x in plain]  # the epoch length is kept
    epoch = [list(x) for x in rep]
    index = [torch.cat([b.index for b in e]) for e in epoch]
    n = len(index[0])
    seen = torch.cat(index)
    assert len(torch.unique(seen)) == len(seen) // k  # 1/k of the samples, each exactly k times
    assert all(int(c) == k for c in torch.unique(seen, return_counts=True)[1])
    for r in range(world):
        partner = r - r % k  # the group's copy 0
        assert torch.equal(index[r], index[partner]) and n == len(index[r])
        if r % k:  # the same samples at the same steps, planned differently
            ops = torch.cat([b.ops for b in epoch[r]])
            assert not torch.equal(ops, torch.cat([b.ops for b in epoch[partner]]))
    # copy 0 plans as a plain loader would; copy c as view_seed(seed, c)
    b0, b1 = next(iter(rep[0])), next(iter(rep[1]))
    ref0 = plain[0].render(b0.index, epoch=b0.epoch)
    assert torch.equal(b0.images, ref0.images) and torch.equal(b0.ops, ref0.ops)
    other = ap.Loader(data, batch_size=10, num_workers=0, seed=view_seed(4, 1), shuffle=False)
    assert torch.equal(b1.images, other.render(b1.index, epoch=b1.epoch).images)
    assert rep[0].state_dict()["repeats"] == k
    with pytest.raises(ValueError, match=f"repeats={k}, this loader has repeats=1"):
        plain[0].load_state_dict(rep[0].state_dict())


def test_bad_repeats_are_named(data):
    with pytest.raises(ValueError, match="multiple of it, got world_size=3"):
        ap.Loader(data, repeats=2, rank=0, world_size=3, num_workers=0)
    with pytest.raises(ValueError, match="use views=2"):
        ap.Loader(data, repeats=2, num_workers=0)
    with pytest.raises(ValueError, match="repeats"):
        ap.Loader(data, repeats=0, num_workers=0)
