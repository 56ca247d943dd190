"""The one compiled piece: box-restricted JPEG decoding against the system libjpeg-turbo
(Debian's libjpeg62-turbo-dev; scripts/setup.sh installs it), and the FFCV stage's per-thread runner.
Everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("augpipe._jpegbox", ["csrc/jpeg_box.c", "csrc/parallel_rows.c"],
                             libraries=["jpeg"], extra_compile_args=["-O2", "-pthread"], extra_link_args=["-pthread"])])
