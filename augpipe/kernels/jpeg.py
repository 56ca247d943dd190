"""Box-restricted JPEG decoding callable from compiled code.

`decode_box` decodes only the rows and columns a crop will read (the C side,
csrc/jpeg_box.c, uses libjpeg-turbo's jpeg_crop_scanline and
jpeg_skip_scanlines and stops after the box's last row). Compiled code calls
the C function by symbol name (registered with LLVM at import), not through a
ctypes pointer: a pointer would be baked into the machine code as a constant
and numba could not cache any function that reaches it, so every process
recompiled the fused folder pass (~37 s). By name, the cached code links
against this process's copy of the library. Under NUMBA_DISABLE_JIT it is the
same C call through ctypes.
"""
import ctypes
import importlib.util

import llvmlite.binding as llvm
import numpy as np
from numba import config, njit, types

ERRORS = {-1: "libjpeg-turbo could not decode the stream", -2: "crop box outside the image",
          -3: "output buffer too small", -4: "not a 1- or 3-component JPEG (or channels not 3 / 4)"}
SYMBOL = "augpipe_jpeg_decode_box"


def _library():
    spec = importlib.util.find_spec("augpipe._jpegbox")
    if spec is None or spec.origin is None:
        raise ImportError("augpipe._jpegbox (csrc/jpeg_box.c) is not built: reinstall augpipe "
                          "(pip install -e . with libjpeg62-turbo-dev installed)")
    return ctypes.CDLL(spec.origin)


LIBRARY = _library()  # the augpipe._jpegbox extension: decode_box, the header scan, the FFCV runner
_c_decode_box = getattr(LIBRARY, SYMBOL)
_c_decode_box.argtypes = [ctypes.c_void_p, ctypes.c_uint64] + [ctypes.c_int64] * 7 + \
    [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p]
_c_decode_box.restype = ctypes.c_int
llvm.add_symbol(SYMBOL, ctypes.cast(_c_decode_box, ctypes.c_void_p).value)
# Pointers travel as uint64: the same registers as a pointer in the x86-64 and AArch64 C ABIs.
_decode = types.ExternalFunction(SYMBOL, types.int32(types.uint64, types.uint64, *[types.int64] * 7,
                                                     types.uint64, types.uint64, types.uint64))


if config.DISABLE_JIT:
    def decode_box(data, top, left, h, w, denom, fast_dct, out, region, channels=3):
        """Decode box (top, left, h, w) of JPEG bytes `data` (uint8, 1-D) at scale
        1/denom (box in scaled coordinates) into uint8 `out` (flat, size >=
        h * region[1] * channels) as RGB (channels=3) or RGBX (channels=4).
        Writes region[0] (first decoded column, <= left) and region[1] (decoded
        width) into int64 `region`; the box is then
        out[:h * region[1] * channels].reshape(h, region[1], channels)[:, left - region[0]:][:, :w].
        fast_dct: 1 = libjpeg's fast integer IDCT (FFCV's choice), 0 = the
        accurate one (torchvision's: bit-identical to torchvision.io.decode_jpeg).
        Returns 0 or a negative code (see ERRORS)."""
        return _c_decode_box(data.ctypes.data, data.size, top, left, h, w, denom, fast_dct, channels,
                             out.ctypes.data, out.size, region.ctypes.data)
else:
    @njit(nogil=True, cache=True)
    def decode_box(data, top, left, h, w, denom, fast_dct, out, region, channels=3):
        """See the NUMBA_DISABLE_JIT branch above: the same call, compiled (and cached)."""
        return _decode(np.uint64(data.ctypes.data), np.uint64(data.size), top, left, h, w, denom, fast_dct, channels,
                       np.uint64(out.ctypes.data), np.uint64(out.size), np.uint64(region.ctypes.data))
