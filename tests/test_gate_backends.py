"""The same gate on every installed backend: same indices, labels, gated masks,
magnitudes and caps, and (in-memory arrays, where the backends' pixels are
identical to the torch backend's, tests/test_ffcv.py and test_dali.py) the
same pixels, fallback views included.

FFCV and DALI are installed on the machines this suite runs on, so they are
imported outright: a missing one is a failure, not a skip.
"""
from __future__ import annotations

import ffcv  # noqa: F401  (installed: a failed import must fail this module)
import numpy as np
import nvidia.dali  # noqa: F401
import pytest
import torch
from test_gate import ShiftTeacher, scripted_data, scripted_loader

import augpipe as ap

# numba's dispatcher finalizers raise a harmless KeyError when FFCV's generated
# pipelines are garbage collected (see augpipe/backends/ffcv.py).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

OPTIONS = {"torch": {}, "ffcv": {"num_workers": 1}, "dali": {}}


def test_same_gate_same_batches_on_every_backend(tmp_path):
    """Fallback at half the magnitude, with cap feedback, over one epoch (a cap change reaches plans
    `loader.lag` batches later, and DALI's pipeline runs on across epoch ends, so later epochs may
    legitimately differ between backends for samples at an epoch boundary; see TeacherGate)."""
    data = scripted_data(seed=1)
    results = {}
    for backend, extra in OPTIONS.items():
        options = {"cache": str(tmp_path / "scripted.beton")} if backend == "ffcv" else None
        gate = ap.TeacherGate(ShiftTeacher(), threshold=0.2, action="fallback", fallback="half", mean=0, std=1,
                              feedback=ap.CapFeedback(down=2, up=0.5))
        loader = scripted_loader(gate, data=data, backend=backend, backend_options=options, **extra)
        batches = [b for b in loader]
        results[backend] = (batches, loader.caps.copy(), gate.state_dict())
        loader.close()
    ref, ref_caps, ref_state = results["torch"]
    assert 0 < ref_state["gated"] < len(data[1])
    for backend, (batches, caps, state) in results.items():
        assert len(batches) == len(ref) and state == ref_state, backend
        for a, b in zip(ref, batches):
            for field in ("index", "labels", "gated", "magnitude", "mags", "ops", "difficulty", "weight"):
                assert torch.equal(getattr(a, field), getattr(b, field)), (backend, field)
            assert torch.equal(a.images, b.images), backend  # arrays: bit-exact on every backend
        assert np.array_equal(caps, ref_caps), backend
