/* Run a C function once per thread: fn(frame, t) for t = 0 .. threads - 1, in
 * `threads` threads (the caller's being thread 0), and wait for them all.
 *
 * The FFCV stage (augpipe/backends/ffcv_rows.py) calls this from the code
 * FFCV compiles for every Loader. A numba prange there made numba's parfor
 * passes run on every Loader (~1 s each on 2 cores); a prange inside the
 * cached kernel made its first compile ~6x slower. Threads started per batch
 * cost microseconds against a batch's tens of milliseconds.
 */
#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 256

typedef void (*rows_fn)(int64_t frame, int64_t t);

struct job {
    rows_fn fn;
    int64_t frame, t;
};

static void *run_job(void *arg) {
    struct job *job = arg;
    job->fn(job->frame, job->t);
    return NULL;
}

/* fn: the function's address. Returns 0, or -1 when threads is outside 1..MAX_THREADS.
 * A thread that cannot be started runs its share on the calling thread instead. */
int augpipe_parallel_rows(uint64_t fn, int64_t frame, int64_t threads) {
    pthread_t ids[MAX_THREADS];
    struct job jobs[MAX_THREADS];
    int started[MAX_THREADS];
    if (threads < 1 || threads > MAX_THREADS) return -1;
    for (int64_t t = 0; t < threads; t++) {
        jobs[t].fn = (rows_fn)(uintptr_t)fn;
        jobs[t].frame = frame;
        jobs[t].t = t;
        started[t] = 0;
    }
    for (int64_t t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int64_t t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        else run_job(&jobs[t]);
    }
    return 0;
}
