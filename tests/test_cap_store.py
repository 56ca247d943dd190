"""The byte cap store (one byte per sample, caps in 1/8 steps): what 10^8-10^9-sample datasets use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe.core.knob import AUTO_BYTE_ABOVE, Knob


def _loaders(fmnist, **kw):
    images, labels = fmnist
    common = dict(batch_size=100, seed=3, num_workers=0, magnitude=20, **kw)
    return (ap.Loader((images, labels), cap_store="float", **common),
            ap.Loader((images, labels), cap_store="byte", **common))


def test_byte_caps_plan_as_float_caps_on_their_steps(fmnist):
    exact, small = _loaders(fmnist)
    caps = np.random.default_rng(0).integers(0, 241, len(exact.dataset)) / 8  # multiples of 1/8
    exact.set_caps(caps), small.set_caps(caps)
    assert small.knob.raw_caps.dtype == np.uint8 and small.knob.raw_caps.nbytes == len(small.dataset)
    np.testing.assert_array_equal(small.caps[:], exact.caps)
    for a, b in zip(exact, small):
        assert torch.equal(a.magnitude, b.magnitude) and torch.equal(a.images, b.images)
        assert torch.equal(a.mags, b.mags)


def test_byte_caps_round_down_and_validate(fmnist):
    _, small = _loaders(fmnist)
    small.set_caps([7.3, 0.05, 30.0], indices=[0, 1, 2])
    assert small.caps[[0, 1, 2]].tolist() == [7.25, 0.0, 30.0]
    batch = small.render([0, 1, 2])
    assert batch.magnitude.tolist() == [7.25, 0.0, 20.0]
    small.caps[5] = 12.5
    assert small.caps[5] == 12.5
    with pytest.raises(ValueError, match=r"caps must be in \[0, 30\]"):
        small.set_caps([31.0], indices=[0])
    with pytest.raises(ValueError, match="caps must be in"):
        small.caps[0] = -1


def test_state_dicts_carry_the_store_and_load_across_stores(fmnist):
    exact, small = _loaders(fmnist)
    small.set_caps(np.full(len(small.dataset), 6.5))
    state = small.state_dict()
    assert state["caps"].dtype == torch.uint8
    exact.load_state_dict(state)  # bytes into a float store: the same magnitudes
    assert (exact.caps == 6.5).all()
    exact.set_caps(np.full(len(exact.dataset), 3.3))
    small.load_state_dict(exact.state_dict())  # floats into bytes: rounded down
    assert (small.caps[:] == 3.25).all()


def test_auto_takes_bytes_for_large_datasets_and_ffcv_keeps_floats():
    assert Knob(9, AUTO_BYTE_ABOVE).cap_store == "float"
    big = Knob(9, AUTO_BYTE_ABOVE + 1)
    assert big.cap_store == "byte" and big.raw_caps.nbytes == AUTO_BYTE_ABOVE + 1
    with pytest.raises(ValueError, match="cap_store must be one of"):
        Knob(9, 10, "half")


def test_ffcv_refuses_the_byte_store_and_auto_gives_it_floats(fmnist, tmp_path):
    pytest.importorskip("ffcv")
    images, labels = fmnist
    with pytest.raises(ValueError, match="cap_store='float'"):
        ap.Loader((images, labels), backend="ffcv", cap_store="byte")
    assert ap.Loader((images, labels), backend="ffcv", num_workers=1,
                     backend_options={"cache": str(tmp_path / "f.beton")}).knob.cap_store == "float"


def test_every_ranks_state_merges_caps_for_another_world_size(fmnist, tmp_path):
    pytest.importorskip("litdata")
    from augpipe.sources.to_litdata import convert_litdata

    images, labels = fmnist
    data = str(convert_litdata((images, labels), tmp_path / "lit", progress=False).path)
    ranks = [ap.Loader(data, batch_size=50, rank=r, world_size=2, num_workers=0) for r in range(2)]
    for r, ld in enumerate(ranks):  # each rank capped the samples it saw
        ld.set_caps(np.full(len(ld.indices(0)), 4.0 + r), indices=ld.indices(0))
    states = [ld.state_dict() for ld in ranks]
    one = ap.Loader(data, batch_size=50, num_workers=0)
    one.load_state_dict(states)
    expected = np.full(len(one.dataset), 30.0, np.float32)
    expected[ranks[0].indices(0)], expected[ranks[1].indices(0)] = 4.0, 5.0
    assert (expected < 30).sum() == 2 * len(ranks[0].indices(0))
    np.testing.assert_array_equal(one.caps, expected)
    again = ap.Loader(data, batch_size=50, rank=1, world_size=2, num_workers=0, cap_store="byte")
    again.load_state_dict(states)  # same world size: its own position, everyone's caps
    np.testing.assert_array_equal(again.caps[:], expected)
