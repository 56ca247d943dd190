"""Counter-based random numbers (splitmix64).

A draw is a pure function of (key, counter): no state, no global RNG, so the
same (seed, epoch, sample index) gives the same numbers in any process, thread
or compiled pipeline. All operands stay np.uint64: mixing uint64 with int64
would silently give float64 in numba.
"""
import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(nogil=True, cache=True)
def splitmix64(x):
    """One splitmix64 step: a bijective mix of a uint64."""
    z = np.uint64(x) + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@njit(nogil=True, cache=True)
def sample_key(seed, epoch, index):
    """The key of one sample's random stream."""
    k = splitmix64(np.uint64(seed))
    k = splitmix64(k ^ np.uint64(epoch))
    return splitmix64(k ^ np.uint64(index))


@njit(nogil=True, cache=True)
def uniform(key, counter):
    """Uniform float64 in [0, 1): the `counter`-th draw of stream `key`."""
    x = splitmix64(key ^ (np.uint64(counter) * _GOLDEN))
    return np.float64(x >> _S11) * _INV53


@njit(nogil=True, cache=True)
def uniform_by_index(seed, epoch, indices, counter):
    """float64 uniform draws, one per dataset index: `uniform(sample_key(seed,
    epoch, index), counter)` for each, so a draw depends on the sample alone."""
    out = np.empty(len(indices), np.float64)
    for i in range(len(indices)):
        out[i] = uniform(sample_key(np.uint64(seed), np.uint64(epoch), np.uint64(indices[i])), np.uint64(counter))
    return out


def view_seed(seed: int, view: int) -> int:
    """The planner seed of view `view` of a multi-view loader: the run's seed for view 0 (so a one-view loader
    plans as before), an independent stream for each further view (63 bits: seeds are int64 in the planner)."""
    if view == 0:
        return int(seed)
    with np.errstate(over="ignore"):  # uint64 wrap-around is intended
        return int(splitmix64(np.uint64(seed) ^ (np.uint64(view) * _GOLDEN)) >> np.uint64(1))
