"""Live views of shared arrays inside compiled code.

numba freezes global and closure arrays as compile-time constants, so an
array captured by an FFCV-generated function would never see later writes.
Capturing the array's *address* (a plain int) and turning it back into a
view at run time (`numba.carray` on a pointer made by `inttoptr`) gives code
that reads the very bytes Python keeps writing: knob, caps, epoch, step.
The owner must keep the arrays alive and never resize or rebind them.

Under NUMBA_DISABLE_JIT=1 the same functions build the views with ctypes.
"""
import ctypes

import numpy as np
from numba import carray, config, njit, types
from numba.extending import intrinsic


@intrinsic
def _voidptr(typingctx, addr):
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(addr), codegen


def _py_view(addr, n, ctype, dtype):
    return np.ctypeslib.as_array((ctype * int(n)).from_address(int(addr))).view(dtype)


if config.DISABLE_JIT:
    def live_f64(addr, n):
        return _py_view(addr, n, ctypes.c_double, np.float64)

    def live_f32(addr, n):
        return _py_view(addr, n, ctypes.c_float, np.float32)

    def live_i64(addr, n):
        return _py_view(addr, n, ctypes.c_int64, np.int64)

    def live_i8(addr, n):
        return _py_view(addr, n, ctypes.c_int8, np.int8)

    def live_u8(addr, n):
        return _py_view(addr, n, ctypes.c_uint8, np.uint8)

    def live_bool(addr, n):
        return _py_view(addr, n, ctypes.c_uint8, np.bool_)
else:
    @njit(nogil=True, inline="always")
    def live_f64(addr, n):
        """float64[n] view of the memory at `addr`."""
        return carray(_voidptr(addr), (n,), np.float64)

    @njit(nogil=True, inline="always")
    def live_f32(addr, n):
        """float32[n] view of the memory at `addr`."""
        return carray(_voidptr(addr), (n,), np.float32)

    @njit(nogil=True, inline="always")
    def live_i64(addr, n):
        """int64[n] view of the memory at `addr`."""
        return carray(_voidptr(addr), (n,), np.int64)

    @njit(nogil=True, inline="always")
    def live_i8(addr, n):
        """int8[n] view of the memory at `addr`."""
        return carray(_voidptr(addr), (n,), np.int8)

    @njit(nogil=True, inline="always")
    def live_u8(addr, n):
        """uint8[n] view of the memory at `addr`."""
        return carray(_voidptr(addr), (n,), np.uint8)

    @njit(nogil=True, inline="always")
    def live_bool(addr, n):
        """bool[n] view of the memory at `addr` (numpy's one-byte bools)."""
        return carray(_voidptr(addr), (n,), np.bool_)


def address(array: np.ndarray) -> int:
    """The address of a C-contiguous array's first element."""
    if not array.flags.c_contiguous:
        raise ValueError("live arrays must be C-contiguous")
    return int(array.ctypes.data)
