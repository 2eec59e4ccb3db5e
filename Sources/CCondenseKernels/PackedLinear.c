// Packed-panel linear kernels (see CCondenseKernels.h for the layout and the accumulation order).
#include "CCondenseKernels.h"
#include "WorkerPool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CONDENSE_X86 1
#endif

enum {
    PANEL = CONDENSE_PANEL_WIDTH,
    // OpenBLAS 0.3.21's GEMM_Q for its SkylakeX/Cooperlake sgemm: cutting k where it does makes every
    // output the same float as its sgemm's. A block of ≤ 320 k also keeps a panel's block (40 KB) in L2.
    K_BLOCK = 320,
    // Rows whose block of x (192 x 320 floats, 240 KB) stays in L2 while the panels stream past.
    ROW_BLOCK = 192,
};

/// Length of the next block of k, as OpenBLAS's threaded level-3 driver cuts it.
static inline long next_k_block(long remaining) {
    if (remaining >= 2 * K_BLOCK) return K_BLOCK;
    if (remaining > K_BLOCK) return (remaining + 1) / 2;
    return remaining;
}

size_t condense_packed_count(long outputs, long inputs) {
    long panels = (outputs + PANEL - 1) / PANEL;
    return (size_t)panels * (size_t)inputs * PANEL;
}

void condense_pack_rows(const float *w, long rows, long ldw, long inputs, long first_output, float *packed) {
    for (long row = 0; row < rows; row++) {
        long output = first_output + row, panel = output / PANEL, lane = output % PANEL;
        float *dst = packed + panel * inputs * PANEL + lane;
        const float *src = w + row * ldw;
        for (long k = 0; k < inputs; k++) dst[k * PANEL] = src[k];
    }
}

/// Adds one block's sums `acc` [rows][PANEL] into y's first `valid` columns; `zero`: y starts at 0.
static inline void add_block_scalar(const float *acc, int rows, float *y, long ldy, long valid, int zero) {
    for (int t = 0; t < rows; t++)
        for (long j = 0; j < valid; j++) {
            float *c = y + t * ldy + j;
            *c = (zero ? 0.0f : *c) + acc[t * PANEL + j];
        }
}

// MARK: Portable

static void block_portable(const float *x, long ldx, const float *panel, long kb, long len, int rows,
                           float *y, long ldy, long valid, int zero) {
    float acc[PANEL];
    for (int t = 0; t < rows; t++) {
        for (int j = 0; j < PANEL; j++) acc[j] = 0.0f;
        const float *xk = x + t * ldx;
        for (long k = kb; k < kb + len; k++) {
            const float *w = panel + k * PANEL;
            for (int j = 0; j < PANEL; j++) acc[j] = fmaf(xk[k], w[j], acc[j]);
        }
        add_block_scalar(acc, 1, y + t * ldy, ldy, valid, zero);
    }
}

#if CONDENSE_X86

// MARK: AVX2: half a panel (16 outputs, 2 vectors) x up to 6 rows = 12 accumulators of the 16 registers.

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void tile_avx2(
    const float *x, long ldx, const float *panel, long kb, long len, int rows, float *y, long ldy, long valid,
    int zero) {
    __m256 acc[6][2];
    for (int t = 0; t < rows; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    const float *w = panel + kb * PANEL;
    const float *xk = x + kb;
    for (long k = 0; k < len; k++, w += PANEL) {
        __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8);
        for (int t = 0; t < rows; t++) {
            __m256 b = _mm256_broadcast_ss(xk + t * ldx + k);
            acc[t][0] = _mm256_fmadd_ps(b, w0, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(b, w1, acc[t][1]);
        }
    }
    if (valid >= 16) {
        for (int t = 0; t < rows; t++) {
            float *c = y + t * ldy;
            __m256 c0 = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(c);
            __m256 c1 = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(c + 8);
            _mm256_storeu_ps(c, _mm256_add_ps(c0, acc[t][0]));
            _mm256_storeu_ps(c + 8, _mm256_add_ps(c1, acc[t][1]));
        }
    } else {
        float sums[6 * PANEL];
        for (int t = 0; t < rows; t++) {
            _mm256_storeu_ps(sums + t * PANEL, acc[t][0]);
            _mm256_storeu_ps(sums + t * PANEL + 8, acc[t][1]);
        }
        add_block_scalar(sums, rows, y, ldy, valid, zero);
    }
}

__attribute__((target("avx2,fma"))) static void block_avx2(
    const float *x, long ldx, const float *panel, long kb, long len, int rows, float *y, long ldy, long valid,
    int zero) {
    for (int half = 0; half < 2 && valid > half * 16; half++) {
        const float *half_panel = panel + half * 16;
        float *half_y = y + half * 16;
        long half_valid = valid - half * 16;
        for (int t = 0; t < rows; t += 6) {
            int tile = rows - t < 6 ? rows - t : 6;
            const float *xt = x + t * ldx;
            float *yt = half_y + t * ldy;
            switch (tile) {
#define TILE(n) case n: tile_avx2(xt, ldx, half_panel, kb, len, n, yt, ldy, half_valid, zero); break;
            TILE(6) TILE(5) TILE(4) TILE(3) TILE(2) TILE(1)
#undef TILE
            }
        }
    }
}

// MARK: AVX-512: a whole panel (32 outputs, 2 vectors) x up to 12 rows = 24 accumulators of the 32 registers.

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void tile_avx512(
    const float *x, long ldx, const float *panel, long kb, long len, int rows, float *y, long ldy, long valid,
    int zero) {
    __m512 acc[12][2];
    for (int t = 0; t < rows; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    const float *w = panel + kb * PANEL;
    const float *xk = x + kb;
    for (long k = 0; k < len; k++, w += PANEL) {
        __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 16);
        for (int t = 0; t < rows; t++) {
            __m512 b = _mm512_set1_ps(xk[t * ldx + k]);
            acc[t][0] = _mm512_fmadd_ps(b, w0, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(b, w1, acc[t][1]);
        }
    }
    __mmask16 low = (__mmask16)(valid >= 16 ? 0xFFFF : (1u << valid) - 1);
    __mmask16 high = (__mmask16)(valid >= 32 ? 0xFFFF : valid <= 16 ? 0 : (1u << (valid - 16)) - 1);
    for (int t = 0; t < rows; t++) {
        float *c = y + t * ldy;
        __m512 c0 = zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(low, c);
        __m512 c1 = zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(high, c + 16);
        _mm512_mask_storeu_ps(c, low, _mm512_add_ps(c0, acc[t][0]));
        _mm512_mask_storeu_ps(c + 16, high, _mm512_add_ps(c1, acc[t][1]));
    }
}

__attribute__((target("avx512f"))) static void block_avx512(
    const float *x, long ldx, const float *panel, long kb, long len, int rows, float *y, long ldy, long valid,
    int zero) {
    for (int t = 0; t < rows; t += 12) {
        int tile = rows - t < 12 ? rows - t : 12;
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        switch (tile) {
#define TILE(n) case n: tile_avx512(xt, ldx, panel, kb, len, n, yt, ldy, valid, zero); break;
        TILE(12) TILE(11) TILE(10) TILE(9) TILE(8) TILE(7) TILE(6) TILE(5) TILE(4) TILE(3) TILE(2) TILE(1)
#undef TILE
        }
    }
}

#endif

CondenseISA condense_best_isa(void) {
#if CONDENSE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return CondenseISAAVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CondenseISAAVX2;
#endif
    return CondenseISAPortable;
}

CondenseISA condense_kernel_isa(void) {
    static _Atomic int chosen = -1;
    int isa = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (isa < 0) {
        isa = (int)condense_best_isa();
        const char *requested = getenv("CONDENSE_KERNELS");
        if (requested && strcmp(requested, "avx2") == 0 && isa > CondenseISAAVX2) isa = CondenseISAAVX2;
        if (requested && strcmp(requested, "portable") == 0) isa = CondenseISAPortable;
        atomic_store_explicit(&chosen, isa, memory_order_relaxed);
    }
    return (CondenseISA)isa;
}

typedef void (*BlockKernel)(const float *x, long ldx, const float *panel, long kb, long len, int rows, float *y,
                            long ldy, long valid, int zero);

static BlockKernel kernel_for(CondenseISA isa) {
#if CONDENSE_X86
    if (isa == CondenseISAAVX512) return block_avx512;
    if (isa == CondenseISAAVX2) return block_avx2;
#endif
    (void)isa;
    return block_portable;
}

/// Output panels [first_panel, end_panel) of the product, every row.
static void panels_product(BlockKernel kernel, const float *x, long m, long ldx, const float *packed, long outputs,
                           long inputs, long first_panel, long end_panel, float *y, long ldy, int accumulate) {
    if (inputs == 0) {  // an empty sum: y = 0, or y unchanged
        long first = first_panel * PANEL, end = end_panel * PANEL < outputs ? end_panel * PANEL : outputs;
        if (!accumulate && end > first)
            for (long r = 0; r < m; r++) memset(y + r * ldy + first, 0, sizeof(float) * (size_t)(end - first));
        return;
    }
    for (long r0 = 0; r0 < m; r0 += ROW_BLOCK) {
        int rows = (int)(m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK);
        const float *xr = x + r0 * ldx;
        for (long p = first_panel; p < end_panel; p++) {
            const float *panel = packed + p * inputs * PANEL;
            float *yp = y + r0 * ldy + p * PANEL;
            long valid = outputs - p * PANEL < PANEL ? outputs - p * PANEL : PANEL;
            int first = 1;
            for (long kb = 0; kb < inputs;) {
                long len = next_k_block(inputs - kb);
                kernel(xr, ldx, panel, kb, len, rows, yp, ldy, valid, first && !accumulate);
                first = 0;
                kb += len;
            }
        }
    }
}

void condense_packed_linear_with(CondenseISA isa, const float *x, long m, long ldx, const float *packed,
                                 long outputs, long inputs, float *y, long ldy, int accumulate) {
    CondenseISA best = condense_best_isa();
    if (isa > best) isa = best;
    long panels = (outputs + PANEL - 1) / PANEL;
    panels_product(kernel_for(isa), x, m, ldx, packed, outputs, inputs, 0, panels, y, ldy, accumulate);
}

typedef struct {
    BlockKernel kernel;
    const float *x;
    long m, ldx;
    const float *packed;
    long outputs, inputs;
    float *y;
    long ldy;
    int accumulate;
    long panels;
    int parts;
} Product;

static void run_part(void *context, int part) {
    const Product *p = context;
    long first = p->panels * part / p->parts, end = p->panels * (part + 1) / p->parts;
    panels_product(p->kernel, p->x, p->m, p->ldx, p->packed, p->outputs, p->inputs, first, end, p->y, p->ldy,
                   p->accumulate);
}

// Below this many multiply-adds a product runs on the calling thread: waking a worker costs more.
static const double parallel_minimum_work = 2e5;

void condense_packed_linear(const float *x, long m, long ldx, const float *packed, long outputs, long inputs,
                            float *y, long ldy, int accumulate) {
    CondenseISA isa = condense_kernel_isa();
    long panels = (outputs + PANEL - 1) / PANEL;
    int parts = condense_linear_threads();
    if (parts > panels) parts = (int)panels;
    if ((double)m * (double)outputs * (double)inputs < parallel_minimum_work) parts = 1;
    Product product = { kernel_for(isa), x, m, ldx, packed, outputs, inputs, y, ldy, accumulate, panels,
                        parts < 1 ? 1 : parts };
    condense_pool_run(run_part, &product, product.parts);
}
