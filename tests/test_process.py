"""Process hygiene: what `import augpipe` loads, any order of backends in one
process (fork safety), and no tracebacks on stderr from a run that worked.

Each case runs as its own Python subprocess, as a user's script would.
"""
import subprocess
import sys
import textwrap

import pytest

SETUP = """
import gc, os, sys, time
import numpy as np
import augpipe as ap
from augpipe.sources import FashionMNIST
src = FashionMNIST("test")
arrays = (src.images[:512].numpy(), src.labels[:512])
"""


def run(script: str, timeout: int = 600, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(SETUP) + textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_clean(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    for bad in ("Traceback", "Exception ignored", "terminate called", "Error"):
        assert bad not in result.stderr, f"{bad!r} on stderr:\n{result.stderr[-3000:]}"


def test_import_augpipe_loads_the_core_only():
    result = run("""
        heavy = ("ffcv", "nvidia", "lightning", "pytorch_lightning", "torch_pruning", "matplotlib", "accelerate")
        own = ("augpipe.gate", "augpipe.driver", "augpipe.integrations", "augpipe.backends.ffcv",
               "augpipe.backends.dali", "augpipe.sources.convert", "augpipe.sources.beton")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(own))
        print(loaded)
        assert loaded == [], loaded
        assert ap.TeacherGate.__module__ == "augpipe.gate.online" and ap.driver.train  # served lazily on use
    """)
    assert_clean(result)


DALI_THEN_FORK = """
    gc.disable()  # keep the DALI loader as uncollected garbage until after the fork, as a busy process would

    def train():
        loader = ap.Loader(arrays, batch_size=64, backend="dali", num_workers=2)
        for i, batch in enumerate(loader):
            if i == 3:
                break

    train()
    pid = os.fork()
    if pid == 0:  # a child that collects garbage: DALI's Pipeline.__del__ used to hang or abort here
        gc.collect()
        os._exit(0)
    for _ in range(120):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.25)
    else:
        os.kill(pid, 9)
        sys.exit("the forked child hung collecting a DALI pipeline")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    gc.enable()
    folder = ap.Loader(sys.argv[1], batch_size=8, size=32, num_workers=2, backend="torch")
    for epoch in range(2):
        n = sum(len(b.index) for b in folder)
    assert n == 24
    print("ok")
"""


def test_forked_workers_after_a_dali_loader(photo_folder):
    assert_clean(run(DALI_THEN_FORK, 600, str(photo_folder)))


def test_any_order_of_backends_in_one_process(photo_folder):
    result = run("""
        folder = sys.argv[1]
        orders = {"ffcv": dict(backend_options={"cache": sys.argv[2]}), "dali": {}, "torch": {}}
        for name in ("ffcv", "dali", "torch", "dali", "ffcv"):
            loader = ap.Loader(arrays, batch_size=64, backend=name, num_workers=2, **orders[name])
            assert sum(b.size for b in loader) == 512
            ev = ap.Loader(folder, batch_size=8, size=32, train=False, num_workers=2, backend="torch",
                           backend_options={"workers": "processes"})
            assert sum(b.size for b in ev) == 24  # forked DataLoader workers after every other backend
        print("ok")
    """, 900, str(photo_folder), str(photo_folder.parent / "order.beton"))
    assert_clean(result)


@pytest.mark.parametrize("backend", ["torch", "ffcv", "dali"])
def test_a_normal_run_leaves_stderr_clean(backend, photo_folder, tmp_path):
    result = run("""
        name, folder, cache = sys.argv[1:4]
        options = {"cache": cache} if name == "ffcv" else None
        for source in (arrays, folder):
            for train in (True, False):
                loader = ap.Loader(source, batch_size=32, backend=name, num_workers=2, train=train, size=32,
                                   backend_options=options if source is arrays else
                                   ({"cache": cache.replace(".beton", "-folder.beton")} if name == "ffcv" else None))
                for epoch in range(2):
                    for batch in loader:
                        pass
        print("ok")
    """, 900, backend, str(photo_folder), str(tmp_path / "c.beton"))
    assert_clean(result)
