// Worker pool: a product is handed to the workers by bumping a generation counter. Workers spin on it for
// a short while after each product (the next GEMM of a forward pass follows within microseconds, and a
// futex wake-up costs tens of them), then sleep on a condition variable.
#define _GNU_SOURCE
#include "CCondenseKernels.h"
#include "WorkerPool.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

enum { MAX_THREADS = 64 };
// How long an idle worker keeps polling before it sleeps.
static const long spin_nanoseconds = 200 * 1000;

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;  // one product at a time
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_ulong generation;
static atomic_int sleepers;
static atomic_int unfinished;  // workers that have not finished the current generation
static atomic_int configured_threads;
static int started_workers;  // guarded by submit_lock

static void (*current_task)(void *, int);
static void *current_context;
static int current_parts;

static long now_nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static unsigned long wait_for_generation(unsigned long seen) {
    long deadline = now_nanoseconds() + spin_nanoseconds;
    for (unsigned spins = 0;; spins++) {
        unsigned long current = atomic_load(&generation);
        if (current != seen) return current;
        cpu_relax();
        if ((spins & 255) == 255 && now_nanoseconds() > deadline) break;
    }
    pthread_mutex_lock(&sleep_lock);
    atomic_fetch_add(&sleepers, 1);
    unsigned long current;
    while ((current = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &sleep_lock);
    atomic_fetch_sub(&sleepers, 1);
    pthread_mutex_unlock(&sleep_lock);
    return current;
}

typedef struct {
    int part;
    unsigned long seen;  // the generation before the worker's first product
} WorkerStart;

static void *worker_main(void *argument) {
    WorkerStart start = *(WorkerStart *)argument;
    free(argument);
    int part = start.part;
    unsigned long seen = start.seen;
    for (;;) {
        seen = wait_for_generation(seen);
        if (part < current_parts) current_task(current_context, part);
        atomic_fetch_sub_explicit(&unfinished, 1, memory_order_release);
    }
    return NULL;
}

static int available_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/// The thread count deployments already set for OpenBLAS (one knob for training and inference), as
/// OpenBLAS reads it, at most the CPUs available; else those CPUs.
static int default_threads(void) {
    int cpus = available_cpus();
    static const char *const variables[] = { "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS" };
    for (size_t i = 0; i < sizeof(variables) / sizeof(variables[0]); i++) {
        const char *value = getenv(variables[i]);
        int threads = value ? atoi(value) : 0;
        if (threads > 0) return threads < cpus ? threads : cpus;
    }
    return cpus;
}

int condense_linear_threads(void) {
    int threads = atomic_load(&configured_threads);
    if (threads <= 0) {
        threads = default_threads();
        if (threads > MAX_THREADS) threads = MAX_THREADS;
        atomic_store(&configured_threads, threads);
    }
    return threads;
}

void condense_linear_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    atomic_store(&configured_threads, threads);
}

void condense_pool_run(void (*task)(void *context, int part), void *context, int parts) {
    if (parts <= 1 || pthread_mutex_trylock(&submit_lock) != 0) {
        for (int part = 0; part < parts; part++) task(context, part);
        return;
    }
    // Workers are numbered 1 ..< started_workers + 1; start the ones this product needs.
    while (started_workers < parts - 1) {
        WorkerStart *start = malloc(sizeof(WorkerStart));
        if (!start) break;
        *start = (WorkerStart){ started_workers + 1, atomic_load(&generation) };
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, worker_main, start);
        pthread_attr_destroy(&attributes);
        if (failed) {
            free(start);
            break;
        }
        started_workers++;
    }

    current_task = task;
    current_context = context;
    current_parts = parts;
    atomic_store(&unfinished, started_workers);
    atomic_fetch_add(&generation, 1);  // publishes the fields above (sequentially consistent)
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    task(context, 0);
    for (int part = started_workers + 1; part < parts; part++) task(context, part);  // no thread could be started
    while (atomic_load_explicit(&unfinished, memory_order_acquire) > 0) cpu_relax();
    pthread_mutex_unlock(&submit_lock);
}
