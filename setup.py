"""The one compiled piece: box-restricted JPEG decoding against the system libjpeg-turbo
(Debian's libjpeg62-turbo-dev; scripts/setup.sh installs it). Everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("augpipe._jpegbox", ["csrc/jpeg_box.c"], libraries=["jpeg"],
                             extra_compile_args=["-O2"])])
