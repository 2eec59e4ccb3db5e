// A fixed pool of worker threads for the kernels' data-parallel loops (not part of the public header).
#ifndef CCONDENSE_WORKER_POOL_H
#define CCONDENSE_WORKER_POOL_H

/// Runs `task(context, part)` for part 0 ..< parts: part 0 on the calling thread, the others on pool
/// workers; returns when all are done. One caller at a time uses the workers: a call made while another
/// is running runs all its parts on its own thread.
void condense_pool_run(void (*task)(void *context, int part), void *context, int parts);

#endif
