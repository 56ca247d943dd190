"""`augpipe bench` plumbing: rows of every backend, one timed row, memory sampling."""
import os

from augpipe.tools.bench import run as bench

ARGS = {"images": 512, "workers": 2, "batch": 128, "magnitude": 9.0, "channels": 3, "data_root": None}


def test_rows_of_every_backend_and_their_baselines():
    for data in ("32px", "224px"):
        rows = bench.rows_for("all", data)
        assert bench.BASELINES[data] in rows
        assert any(n.startswith("augpipe-torch") for n in rows)
        assert any(n.startswith("augpipe-dali") for n in rows) and any(n.startswith("DALI stock") for n in rows)
        assert any(n.startswith("augpipe-ffcv") for n in rows) and any(n.startswith("FFCV ") for n in rows)


def test_a_row_times_the_images_it_was_asked_for():
    result = bench._run_row("torch", "32px", "augpipe-torch, per-sample caps", ARGS)
    assert result["images"] == 512 and result["images_per_s"] > 0 and result["seconds"] > 0


def test_peak_memory_reads_this_process_tree():
    assert bench._pss_kib(os.getpid()) > 10_000  # a Python process with torch holds > 10 MB
    assert os.getpid() in bench._tree(os.getpid())


def test_mixing_rows_pair_each_backend_with_and_without_the_recipe():
    for data in ("32px", "224px"):
        rows = bench.rows_for("all", data, mix=True)
        assert bench.MIX_BASELINE in rows and "torchvision RandAugment, float" in rows
        for b in ("torch", "ffcv", "dali"):
            assert f"augpipe-{b} RandAugment, float" in rows
            assert f"augpipe-{b} RandAugment+RandomErasing+CutMix/MixUp" in rows


def test_the_mixing_rows_deliver_mixed_float_batches_and_torchvisions_soft_targets():
    args = {**ARGS, "mix": True, "workers": 0}
    rows = bench.rows_for("torch", "32px", mix=True)
    images, targets = next(iter(rows[bench.MIX_BASELINE](args)))
    assert images.dtype.is_floating_point and targets.shape == (128, 10)
    batch = next(iter(rows["augpipe-torch RandAugment+RandomErasing+CutMix/MixUp"](args)))
    assert batch.images.dtype.is_floating_point and batch.targets.shape == (128, 10) and (batch.lam < 1).any()
    result = bench._run_row("torch", "32px", "augpipe-torch RandAugment+RandomErasing+CutMix/MixUp", args)
    assert result["images"] == 512


def test_litdata_rows_stream_the_same_dataset_through_augpipe_and_litdatas_own_loader(photo_folder, tmp_path,
                                                                                     monkeypatch):
    import pytest

    pytest.importorskip("litdata")
    from augpipe.sources.to_litdata import convert_litdata
    from augpipe.tools.bench import litdata as rows

    assert {"augpipe-torch on litdata RRC+flip+RandAugment", "torchvision on litdata StreamingDataLoader"} \
        <= set(bench.rows_for("all", "224px"))
    out = convert_litdata(photo_folder, tmp_path / "lit", progress=False).path
    monkeypatch.setattr(rows, "dataset", lambda args, data: out)
    args = {**ARGS, "batch": 4, "workers": 0}
    for name, factory in rows.ROWS["224px"].items():
        images, labels = next(iter(factory(args)))
        assert images.shape == (4, 3, 224, 224) and labels.shape == (4,), name
