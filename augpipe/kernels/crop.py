"""Crop (with padding) and horizontal flip into a preallocated buffer."""
from numba import njit


@njit(nogil=True, cache=True)
def crop_flip(src, tops, lefts, flips, fill, dst):
    """dst[n] = window of src[n] at (tops[n], lefts[n]), mirrored if flips[n].

    src: uint8 (N, C, H, W); dst: uint8 (N, C, h, w). Windows may reach
    outside the image (padding): those pixels get `fill`.
    """
    n_img, channels, height, width = src.shape
    h, w = dst.shape[2], dst.shape[3]
    for n in range(n_img):
        top, left, mirror = tops[n], lefts[n], flips[n]
        for c in range(channels):
            for y in range(h):
                sy = top + y
                row_ok = 0 <= sy < height
                for x in range(w):
                    sx = left + (w - 1 - x if mirror else x)
                    if row_ok and 0 <= sx < width:
                        dst[n, c, y, x] = src[n, c, sy, sx]
                    else:
                        dst[n, c, y, x] = fill
