// Linear layers over packed weights: y = x·Wᵀ for the inference engine.
//
// W [n outputs x k inputs] is packed once, at model load, into panels of CONDENSE_PANEL_WIDTH outputs
// stored k-major ([panel][k][32]), so a product streams the weights contiguously and never copies them
// again (OpenBLAS re-packs its operands on every call, which costs as much as the arithmetic when a batch
// has few rows). Every output is accumulated in a fixed order: a sequential fused multiply-add chain over
// each block of k (blocks cut like OpenBLAS 0.3.21's threaded level-3 driver with GEMM_Q = 320), block
// sums added in order. So each row of y is independent of the other rows and their number, bit for bit,
// on every instruction set, and equals OpenBLAS's SkylakeX/Cooperlake sgemm bit for bit.
#ifndef CCONDENSE_KERNELS_H
#define CCONDENSE_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Outputs per packed panel.
#define CONDENSE_PANEL_WIDTH 32

/// Vector instruction sets the kernels are written for.
typedef enum {
    CondenseISAPortable = 0,  // plain C, fmaf
    CondenseISAAVX2 = 1,      // 256-bit FMA
    CondenseISAAVX512 = 2,    // 512-bit FMA
} CondenseISA;

/// The widest instruction set this CPU and OS support.
CondenseISA condense_best_isa(void);

/// The instruction set `condense_packed_linear` uses: the best one, or a narrower one named by the
/// environment variable `CONDENSE_KERNELS` (`avx2`, `portable`; for comparisons). Results are the same.
CondenseISA condense_kernel_isa(void);

/// Floats needed to pack a weight of `outputs` rows and `inputs` columns (zero rows pad the last panel).
size_t condense_packed_count(long outputs, long inputs);

/// Writes rows [0, rows) of `w` (row stride `ldw`, `inputs` columns) into `packed` as its output rows
/// `first_output` ..< `first_output + rows`. `packed` holds `condense_packed_count(outputs, inputs)` floats for
/// all its outputs, 64-byte aligned, zeroed beforehand (the padding of the last panel).
void condense_pack_rows(const float *w, long rows, long ldw, long inputs, long first_output, float *packed);

/// y[m x outputs] (row stride ldy) = x[m x inputs] (row stride ldx) · Wᵀ, or y += ... when `accumulate`.
/// Splits the output panels over the worker pool (`condense_linear_set_threads`).
void condense_packed_linear(const float *x, long m, long ldx, const float *packed, long outputs, long inputs,
                            float *y, long ldy, int accumulate);

/// The same product on the calling thread with a given instruction set (at most `condense_best_isa()`).
void condense_packed_linear_with(CondenseISA isa, const float *x, long m, long ldx, const float *packed,
                                 long outputs, long inputs, float *y, long ldy, int accumulate);

/// Threads a product may use (the caller included); default: `OPENBLAS_NUM_THREADS` (or `GOTO_NUM_THREADS`,
/// `OMP_NUM_THREADS`), at most the CPUs this process may run on, else those CPUs.
int condense_linear_threads(void);
void condense_linear_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif
