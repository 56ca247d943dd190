"""Where to decode: DCT-scaled JPEG decoding for a crop box.

libjpeg-turbo decodes at 1/2, 1/4 or 1/8 scale almost for free (it skips
the high-frequency DCT work). When the planner's crop box is at least
`denom` times the output size on both sides, decoding at 1/denom and
resizing the scaled box loses nothing the antialiased downscale would keep
(up to the decoder's own DCT-domain filter). These helpers choose the scale
and map the box; the decode call itself belongs to the executor.
"""
from numba import njit


@njit(nogil=True, cache=True)
def dct_denominator(box_h, box_w, out_h, out_w, max_denom):
    """Largest d in {8, 4, 2} (<= max_denom) with box >= d * output on both
    sides, else 1."""
    d = 8
    while d > 1:
        if d <= max_denom and box_h >= d * out_h and box_w >= d * out_w:
            return d
        d //= 2
    return 1


@njit(nogil=True, cache=True)
def scaled_size(size, denom):
    """libjpeg-turbo's TJSCALED: ceil(size / denom)."""
    return (size + denom - 1) // denom


@njit(nogil=True, cache=True)
def scale_box(top, left, h, w, denom, height, width, out):
    """Map a full-resolution box onto an image decoded at 1/denom (whose size
    is height x width after scaling). Writes (top, left, h, w) into `out`."""
    t = top // denom
    l = left // denom
    hh = max(1, min(h // denom, height - t))
    ww = max(1, min(w // denom, width - l))
    out[0] = t
    out[1] = l
    out[2] = hh
    out[3] = ww
