"""An image folder's header scan: the C scan reads what PIL reads, the result
is cached on disk per folder and revalidated file by file, and a corrupt file
found through the cache is still named."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import augpipe as ap
from augpipe.sources.headers import _pil, cache_file, cached_scan, scan


@pytest.fixture
def tree(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("AUGPIPE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    shutil.copytree(photo_folder, root)
    return root


def _stat(paths):
    st = [os.stat(p) for p in paths]
    return np.array([s.st_size for s in st]), np.array([s.st_mtime_ns for s in st])


def test_the_c_scan_reads_what_pil_reads_on_every_format(tree):
    paths = [str(p) for p in sorted(tree.rglob("*")) if p.is_file()]
    (tree / "astronaut" / "cut.jpg").write_bytes((tree / "astronaut" / "00.jpg").read_bytes()[:-300])
    (tree / "astronaut" / "notes.jpg").write_bytes(b"this is not an image")
    paths += [str(tree / "astronaut" / "cut.jpg"), str(tree / "astronaut" / "notes.jpg")]
    info, kinds = scan(paths, progress=False)
    ref = [_pil(p) for p in paths]
    np.testing.assert_array_equal(info, np.array([r[0] for r in ref]))
    np.testing.assert_array_equal(kinds, np.array([r[1] for r in ref]))
    assert {1, 2, 3, 0} <= set(kinds.tolist())  # JPEG, other (PNG, CMYK), truncated, unreadable all met


def test_the_cache_is_reused_and_revalidated_per_file(tree):
    src = ap.FolderSource(tree)
    first = src.headers()
    assert cache_file(tree).is_file()
    paths = [src.path(i) for i in range(len(src))]
    info, kinds, counts = cached_scan(tree, paths, *_stat(paths))
    assert counts == {"reused": len(paths), "read": 0}
    np.testing.assert_array_equal(info[:, :2], first[0])

    np.testing.assert_array_equal(kinds, first[1])


def test_a_changed_added_or_removed_file_is_read_again_and_nothing_else(tree):
    src = ap.FolderSource(tree)
    src.headers()
    changed = tree / "chelsea" / "00.jpg"
    changed.write_bytes((tree / "coffee" / "01.jpg").read_bytes())
    os.utime(changed, ns=(1, 1))
    (tree / "coffee" / "new.jpg").write_bytes((tree / "astronaut" / "02.jpg").read_bytes())
    (tree / "astronaut" / "03.jpg").unlink()
    now = ap.FolderSource(tree)
    paths = [now.path(i) for i in range(len(now))]
    _, _, counts = cached_scan(tree, paths, *_stat(paths))
    assert counts == {"reused": len(paths) - 2, "read": 2}
    np.testing.assert_array_equal(now.headers()[0], scan(paths, progress=False)[0][:, :2])


def test_a_truncated_file_found_through_the_cache_is_still_named(tree):
    cut = tree / "coffee" / "02.jpg"
    cut.write_bytes(cut.read_bytes()[:-500])
    for attempt in range(2):  # the second time, the kinds come from the cache
        with pytest.raises(ap.DecodeError, match=r"02\.jpg.*truncated"):
            ap.Loader(tree, batch_size=4, size=32, num_workers=0)
    assert cache_file(tree).is_file()


def test_the_listing_keeps_sorted_rglob_order_hidden_entries_and_symlinks(tmp_path):
    from pathlib import Path

    from augpipe.sources.folder import _list_images

    root = tmp_path / "c"
    for rel in ("b.jpg", "a.JPG", "a.b/x.jpg", "a/y.png", "a/z/deep.jpeg", "A/up.jpg", ".hidden.jpg",
                ".cache/x.jpg", "notes.txt", "a-b.jpg", "a0.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "link.jpg").symlink_to(root / "b.jpg")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "out.jpg").write_bytes(b"x")
    (root / "linkdir").symlink_to(tmp_path / "elsewhere")  # rglob does not enter symlinked folders
    exts = {".jpg", ".jpeg", ".png"}
    old = [str(p) for p in sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in exts and p.is_file()
                                  and not any(part.startswith(".") for part in p.relative_to(root).parts))]
    assert [p for p, _ in _list_images(str(root), exts)] == old and len(old) == 9
