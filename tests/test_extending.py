"""docs/extending.md's three examples, run: a backend, a gate metric and a
pruning method, each added from outside augpipe through its registry."""
from __future__ import annotations

import sys
import textwrap

import torch

import augpipe as ap

SERIAL = textwrap.dedent('''
    from augpipe.engine.reference import build_part


    class SerialBackend:
        lag = 0

        def __init__(self, ctx):
            self.ctx = ctx

        def iterate(self, epoch, start):
            for req in self.ctx.requests(epoch, start):
                part = build_part(self.ctx.spec, req.epoch, req.indices, req.knob)
                plan = part["plan"]
                yield self.ctx.finish(part["images"], self.ctx.source.labels[plan.index], plan.index,
                                      plan.magnitude, plan.ops, plan.mags, req.epoch, req.step)

        def close(self):
            pass


    def make_backend(ctx):
        return SerialBackend(ctx)
''')


def test_a_backend_registered_from_outside_matches_the_torch_backend(fmnist, tmp_path, monkeypatch):
    (tmp_path / "serial_backend.py").write_text(SERIAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ap.backends.REGISTRY, "serial", ap.backends.Entry("serial_backend"))
    ap.backends.register("serial", "serial_backend")
    mine = ap.Loader(fmnist, batch_size=64, magnitude=9, seed=4, backend="serial")
    ref = ap.Loader(fmnist, batch_size=64, magnitude=9, seed=4, backend="torch", num_workers=0)
    assert mine.backend == "serial"
    for a, b in zip(mine, ref):
        assert torch.equal(a.images, b.images) and torch.equal(a.index, b.index) and torch.equal(a.ops, b.ops)
    from augpipe.engine.contract import Backend

    assert isinstance(sys.modules["serial_backend"].SerialBackend(None), Backend)


def test_a_registered_metric_drives_the_gate(fmnist, monkeypatch):
    from augpipe.gate import metrics

    metric = metrics.Metric("log_p_true", lowest=-float("inf"),
                            fn=lambda logp, labels, clean: logp.gather(1, labels.view(-1, 1).long()).squeeze(1))
    monkeypatch.setitem(metrics.REGISTRY, "log_p_true", metric)  # removed again after the test
    metrics.register(metric)
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    got = metrics.score("log_p_true", logits, labels)
    assert torch.allclose(got.exp(), metrics.score("p_true", logits, labels))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    gate = ap.TeacherGate(teacher, metric="log_p_true", threshold=-1.0, action="fallback")
    loader = ap.Loader(fmnist, batch_size=64, magnitude=9, num_workers=0, gate=gate)
    batch = next(iter(loader))
    assert batch.difficulty is not None and len(batch.difficulty) == 64


def test_a_registered_pruning_method_runs_through_prune(monkeypatch):
    import torch.nn.utils.prune as torch_prune

    from augpipe.driver.prune import REGISTRY, Method, prunable_weights, prune, register, weight_sparsity

    def random_unstructured(model, sparsity, example_input, options):
        for _, m in prunable_weights(model):
            torch_prune.random_unstructured(m, "weight", amount=sparsity)
        return weight_sparsity(model)

    method = Method("random-unstructured", random_unstructured)
    monkeypatch.setitem(REGISTRY, method.name, method)  # removed again after the test
    register(method)
    model = ap.driver.build_model("cnn", 0.5)
    report = prune(model, 0.5, method="random-unstructured")
    assert report.method == "random-unstructured" and abs(report.sparsity - 0.5) < 0.01
