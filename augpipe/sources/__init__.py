"""Where pixels come from. A source reads and decodes; it never augments.

- `base`: `Source` (the declared capabilities backends rely on) and `DecodeError`.
- `array`: `ArraySource` and `FashionMNIST`, in one shared-memory NCHW tensor.
- `folder`: `FolderSource`, an ImageFolder tree decoded one file at a time.
- `beton`: `BetonSource`, an FFCV .beton (FFCV is imported only here).
- `open`: `open_source`, what the Loader does with what the user passed.
- `litdata`: `LitdataSource`, a litdata dataset (litdata is imported only here); its order is litdata's.
- `webdataset`: WebDataset tar shards, an input format for conversion.
- `convert`: `augpipe convert`, a source to a .beton; `to_litdata`: to a litdata dataset.
"""
from .array import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, ArraySource, FashionMNIST
from .base import DecodeError, Source
from .folder import KIND_JPEG, KIND_OTHER, KIND_TRUNCATED, KIND_UNREADABLE, FolderSource
from .litdata import LitdataSource
from .open import open_source

__all__ = ["ArraySource", "DecodeError", "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "FashionMNIST",
           "FolderSource", "KIND_JPEG", "LitdataSource", "KIND_OTHER", "KIND_TRUNCATED", "KIND_UNREADABLE", "Source", "open_source"]
