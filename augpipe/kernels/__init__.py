"""numba kernels, installed as ``augpipe.kernels``.

Plain module-level functions that depend on nothing of augpipe, so that the
planner and every executor (including code compiled inside FFCV's pipeline)
can call them, and so that each one also runs as plain Python under
``NUMBA_DISABLE_JIT=1``.
"""
