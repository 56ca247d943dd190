"""`augpipe convert`: any augpipe source -> an FFCV .beton file.

Fields: "image" (RGBImageField: jpg / raw / proportion, optional
max_resolution), "label" (int) and "index" (position in the source). The
file is written under a temporary name next to the target and renamed at the
end, so an interrupted or failed conversion never leaves a half-written
.beton under the final name. A corrupt image raises `DecodeError` naming its
path (on_error="raise", the default) or is left out and counted
(on_error="skip": the rest is written, `ConvertResult.skipped` lists them).

Grey sources are stored as RGB (FFCV's image field is 3-channel only).

With image_format "jpg" or "exact", image files that already are JPEGs
(greyscale or YCbCr, which augpipe's decoder reads) are stored byte for
byte: no re-encoding, so the .beton decodes to exactly the pixels of the
original file (augpipe decodes with libjpeg-turbo's accurate IDCT, as
torchvision). Other images (PNG, CMYK JPEGs, arrays) and JPEGs larger than
max_resolution are JPEG-encoded at `jpeg_quality` ("jpg", as FFCV does) or
stored as pixels ("exact": lossless, what the FFCV backend converts image
folders to, so that its batches equal the torch backend's).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ffcv_import
from .base import DecodeError, Source
from .open import open_source

FORMATS = ("jpg", "exact", "raw", "proportion")


@dataclass
class ConvertResult:
    """What a conversion wrote: `path`, `written` samples, `skipped` (path, reason) pairs."""

    path: Path
    written: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _Samples:
    """The indexable dataset FFCV's writer reads (in its worker processes).

    A failing sample never raises inside the writer (its workers would die
    and the writer would wait forever): it is flagged in shared memory and
    written as a tiny placeholder; the parent then raises or rewrites
    without it. In raise mode the first failure also stops further decoding.
    """

    def __init__(self, source: Source, failed, abort, stop_early: bool, keep_jpeg: int | None = None,
                 lossless: bool = False):
        self.source, self.failed, self.abort, self.stop_early = source, failed, abort, stop_early
        self.keep_jpeg = keep_jpeg  # max stored side for JPEG files kept as they are (0: any), None: never
        self.lossless = lossless  # images not kept as JPEG bytes are stored as pixels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        placeholder = (np.zeros((8, 8, 3), np.uint8), int(self.source.labels[i]), int(i))
        if self.abort.value:
            return placeholder
        if self.keep_jpeg is not None and self.source.files:
            kept = _stored_jpeg(self.source.path(int(i)), self.keep_jpeg)
            if kept is not None:
                return kept, int(self.source.labels[i]), int(i)
        try:
            image = self.source.load(int(i))
        except Exception:  # DecodeError and anything else: flag it, never kill the writer
            self.failed[i] = 1
            if self.stop_early:
                self.abort.value = 1
            return placeholder
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        return pixels.view(Pixels) if self.lossless else pixels, int(self.source.labels[i]), int(i)


class Pixels(np.ndarray):
    """An image FFCV's RGBImageField stores raw whatever its write mode."""


class StoredJpeg(np.ndarray):
    """An image FFCV's RGBImageField writes as `.jpeg`, its original bytes: a
    zero-strided (H, W, 3) stand-in (so the field records the size) whose JPEG
    encoding is the file itself (see `_keep_jpeg_bytes`)."""

    jpeg: np.ndarray


def _stored_jpeg(path: str, max_side: int) -> StoredJpeg | None:
    """The file as a StoredJpeg when it is a 1- or 3-component JPEG within
    max_side (0: any size), else None (it is then decoded and re-encoded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            w, h = im.size
    except Exception:  # unreadable here: the normal path decodes it and reports the error
        return None
    if max_side and max(h, w) > max_side:
        return None
    stand_in = np.broadcast_to(np.zeros(1, np.uint8), (h, w, 3)).view(StoredJpeg)
    stand_in.jpeg = np.fromfile(path, dtype=np.uint8)
    return stand_in


def _keep_jpeg_bytes() -> None:
    """Teach FFCV's image field the two stand-ins: StoredJpeg (its JPEG
    encoding is the file's own bytes) and Pixels (stored raw). The writer's
    processes are forked after this and inherit it; once patched, images that
    are neither are encoded exactly as before."""
    ffcv_import.load()
    from ffcv.fields import rgb_image

    if getattr(rgb_image.encode_jpeg, "augpipe", False):
        return
    encode = rgb_image.encode_jpeg
    field_encode = rgb_image.RGBImageField.encode

    def encode_jpeg(image, quality):
        return image.jpeg if isinstance(image, StoredJpeg) else encode(image, quality)

    def encode_field(self, destination, image, malloc):
        if not isinstance(image, Pixels):
            return field_encode(self, destination, image, malloc)
        mode, self.write_mode = self.write_mode, "raw"
        try:
            return field_encode(self, destination, np.asarray(image), malloc)
        finally:
            self.write_mode = mode

    encode_jpeg.augpipe = True
    rgb_image.encode_jpeg = encode_jpeg
    rgb_image.RGBImageField.encode = encode_field


def _fields(image_format: str, max_resolution, jpeg_quality: int, compress_probability: float):
    ffcv_import.load()
    from ffcv.fields import IntField, RGBImageField

    return {"image": RGBImageField(write_mode=image_format, max_resolution=max_resolution,
                                   jpeg_quality=jpeg_quality, compress_probability=compress_probability),
            "label": IntField(), "index": IntField()}


def _write(path: Path, samples: _Samples, fields, indices, num_workers: int) -> None:
    ffcv_import.load()
    from ffcv.writer import DatasetWriter

    writer = DatasetWriter(str(path), fields, num_workers=num_workers)
    writer.from_indexed_dataset(samples, indices=np.asarray(indices, dtype=np.int64), chunksize=64)


def convert(source, out, image_format: str = "jpg", max_resolution: int | None = None, jpeg_quality: int = 90,
            compress_probability: float = 0.5, on_error: str = "raise", num_workers: int | None = None,
            seed: int = 0) -> ConvertResult:
    """Write `source` (anything `augpipe.sources.open_source` takes, or a Source) to `out`.

    Args:
        image_format: "jpg" (JPEG files as they are; other images JPEG-encoded
            at quality `jpeg_quality`), "exact" (JPEG files as they are,
            other images as pixels: lossless), "raw" (pixels),
            or "proportion" (each image JPEG with probability
            `compress_probability`, seeded by `seed`).
        max_resolution: longest side stored (larger images are downscaled
            with OpenCV's INTER_AREA, FFCV's own rule); None keeps sizes.
        on_error: "raise" (DecodeError naming the file) or "skip".
        num_workers: writer processes (default: all cores).

    Raises:
        DecodeError: a corrupt image with on_error="raise". Nothing is left
            under `out` (nor any temporary file).
    """
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {FORMATS}, got {image_format!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_resolution is not None and (not isinstance(max_resolution, int) or max_resolution < 8):
        raise ValueError(f"max_resolution must be an int >= 8 or None, got {max_resolution!r}")
    src = open_source(source, on_error=on_error)
    out = Path(out)
    if out.suffix.lower() != ".beton":
        raise ValueError(f"output must end in .beton, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    num_workers = num_workers or os.cpu_count() or 1
    skipped = list(getattr(src, "skipped", []))
    failed = mp.Array("b", len(src), lock=False)
    abort = mp.Value("b", 0, lock=False)
    keep = (max_resolution or 0) if image_format in ("jpg", "exact") else None
    samples = _Samples(src, failed, abort, stop_early=on_error == "raise", keep_jpeg=keep,
                       lossless=image_format == "exact")
    fields = _fields("jpg" if image_format == "exact" else image_format, max_resolution, jpeg_quality,
                     compress_probability)
    if keep is not None:
        _keep_jpeg_bytes()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp2 = out.with_name(f".{out.name}.tmp2-{os.getpid()}")
    np_state = np.random.get_state()
    try:
        np.random.seed(seed)  # "proportion" draws from numpy's global RNG in the (forked) workers
        _write(tmp, samples, fields, np.arange(len(src)), num_workers)
        bad = np.flatnonzero(np.frombuffer(failed, dtype=np.int8))
        if len(bad):
            reasons = []
            for i in bad:
                try:
                    src.load(int(i))
                    reasons.append((src.describe(int(i)), "failed during conversion"))
                except DecodeError as err:
                    reasons.append((err.path or src.describe(int(i)), err.reason))
                except Exception as err:  # noqa: BLE001 - reported, not hidden
                    reasons.append((src.describe(int(i)), f"{type(err).__name__}: {err}"))
            if on_error == "raise":
                path, reason = reasons[0]
                raise DecodeError(path, reason + "; pass on_error='skip' (--on-error skip) to leave it out")
            skipped.extend(reasons)
            keep = np.setdiff1d(np.arange(len(src)), bad)
            if len(keep) == 0:
                raise ValueError(f"every image of {source!r} failed to decode; nothing to write")
            _write(tmp2, samples, fields, keep, num_workers)
            os.replace(tmp2, tmp)
        os.replace(tmp, out)
        return ConvertResult(out, len(src) - len(bad), skipped)
    finally:
        np.random.set_state(np_state)
        for p in (tmp, tmp2):
            if p.exists():
                p.unlink()


# ------------------------------------------------------------------ CLI

def add_parser(sub) -> None:
    """Register `augpipe convert` on the CLI's subparsers."""
    c = sub.add_parser("convert", help="convert an image folder / arrays / fashion-mnist / WebDataset shards to an "
                                       "FFCV .beton or (--format litdata) a litdata dataset")
    c.add_argument("source", help="image folder, fashion-mnist[:train|:test], a .beton; with --format litdata "
                                  "also WebDataset shards: a .tar, a brace pattern ('train-{000..009}.tar') or a "
                                  "folder of .tar files")
    c.add_argument("out", help="output .beton path, or the litdata dataset directory")
    c.add_argument("--format", dest="image_format", choices=(*FORMATS, "litdata"), default="jpg",
                   help="the .beton's image storage, or 'litdata' (encoded bytes as they are; "
                        "read with Loader('litdata:OUT'))")
    c.add_argument("--overwrite", action="store_true", help="litdata: replace OUT once the new one is complete")
    c.add_argument("--max-resolution", type=int, default=None, help="longest stored side (px)")
    c.add_argument("--quality", type=int, default=90, help="JPEG quality")
    c.add_argument("--proportion", type=float, default=0.5, help="JPEG share for --format proportion")
    c.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    c.add_argument("--workers", type=int, default=None)
    c.set_defaults(func=cmd_convert)


def cmd_convert(a) -> None:
    if a.image_format == "litdata":
        from .to_litdata import convert_litdata

        try:
            r = convert_litdata(a.source, a.out, on_error=a.on_error, overwrite=a.overwrite)
        except (DecodeError, FileExistsError, FileNotFoundError, ValueError) as err:
            sys.exit(f"augpipe convert: {err}")
        print(f"wrote {r.path}: {r.written} samples, {r.nbytes / 1e6:.1f} MB in {r.seconds:.1f} s "
              f"({r.written / max(r.seconds, 1e-9):,.0f} img/s, {r.nbytes / 1e6 / max(r.seconds, 1e-9):.0f} MB/s)"
              + (f", skipped {len(r.skipped)}" if r.skipped else ""))
        for name, reason in r.skipped:
            print(f"  skipped {name}: {reason}")
        return
    try:
        r = convert(a.source, a.out, a.image_format, a.max_resolution, a.quality, a.proportion, a.on_error, a.workers)
    except DecodeError as err:
        sys.exit(f"augpipe convert: {err}")
    print(f"wrote {r.path}: {r.written} samples" + (f", skipped {len(r.skipped)}" if r.skipped else ""))
    for path, reason in r.skipped:
        print(f"  skipped {path}: {reason}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m augpipe.sources.convert")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["convert", *sys.argv[1:]])
    ns.func(ns)
