"""What a user installs is what the tests test: a built wheel and a plain
(non-editable) `pip install .` both hold every sub-package and the compiled
JPEG module, import every public name and run a small Loader — from outside
the checkout, so nothing is served from the source tree."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "augpipe").rglob("__init__.py"))
SMOKE = """
import sys, augpipe, augpipe.gate, augpipe.driver, augpipe.integrations.lightning, augpipe.models, augpipe.tools.bench.run
assert augpipe.__file__.startswith(sys.argv[1]), augpipe.__file__
from augpipe import Loader, TeacherGate, DifficultyTable, RandAugment
from augpipe._jpegbox import __name__ as _
loader = Loader("fashion-mnist", batch_size=16, magnitude=9, num_workers=0)
images, labels = next(iter(loader))
assert images.shape == (16, 1, 28, 28), images.shape
print("ok", augpipe.__version__)
"""


def _pip(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _smoke(target: Path, cwd: Path):
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run([sys.executable, "-c", SMOKE, str(target)], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT), cwd=out)
    [whl] = out.glob("augpipe-*.whl")
    return whl


def test_the_wheel_holds_every_package_and_the_compiled_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    missing = [p for p in PACKAGES if f"{p.replace('.', '/')}/__init__.py" not in names]
    assert not missing, f"the wheel leaves out {missing}"
    assert any(n.startswith("augpipe/_jpegbox") and n.endswith(".so") for n in names)
    assert "augpipe.gate" in PACKAGES and "augpipe.kernels" in PACKAGES


def test_the_wheel_installs_and_runs(wheel, tmp_path):
    target = tmp_path / "site"
    _pip("install", "--no-deps", "-q", "--target", str(target), str(wheel), cwd=tmp_path)
    _smoke(target, tmp_path)


def test_a_plain_pip_install_of_the_checkout_runs(tmp_path):
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-build-isolation", "-q", "--target", str(target), str(ROOT), cwd=tmp_path)
    _smoke(target, tmp_path)
