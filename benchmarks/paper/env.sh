# Sourced by every paper experiment: one thread per process (two experiment
# processes share this 2-core machine), so runs are also bit-reproducible.
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export AUGPIPE_RUNS="${AUGPIPE_RUNS:-runs/paper}"
