"""`open_source`: what the user passed to the Loader, as a Source."""
from __future__ import annotations

import os
from pathlib import Path

from .array import ArraySource, FashionMNIST
from .base import Source
from .folder import FolderSource


def open_source(source, on_error: str = "raise") -> Source:
    """Turns what the user passed into a Source.

    Args:
        source: A Source (returned as is); an (images, labels) pair; "fashion-mnist",
            "fashion-mnist:train" or "fashion-mnist:test"; a path to an image folder; a
            .beton file (`augpipe convert`; read with FFCV); or a litdata dataset
            ("litdata:DIR", or its directory; `augpipe convert --format litdata`).
        on_error: Passed to FolderSource.

    Raises:
        ValueError: An existing path that is neither a folder nor a .beton file.
        FileNotFoundError: A path that does not exist.
        TypeError: Anything else.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return ArraySource(*source)
    if isinstance(source, str) and (source == "fashion-mnist" or source.startswith("fashion-mnist:")):
        return FashionMNIST(split=source.partition(":")[2] or "train")
    if isinstance(source, str) and source.startswith("litdata:"):
        from .litdata import LitdataSource  # litdata is imported only for litdata sources

        return LitdataSource(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source path {path} does not exist")
        if path.suffix.lower() == ".beton":
            from .beton import BetonSource  # FFCV is imported only for .beton sources

            return BetonSource(path)
        if path.is_dir() and (path / "augpipe.json").is_file() and (path / "index.json").is_file():
            from .litdata import LitdataSource

            return LitdataSource(path)
        if not path.is_dir():
            raise ValueError(f"{path} is a file; expected a folder laid out as <root>/<class>/<image>")
        return FolderSource(path, on_error=on_error)
    raise TypeError(f"cannot open a source from {type(source).__name__}; pass a Source, an (images, labels) "
                    "pair, 'fashion-mnist[:train|:test]' or an image folder path")
