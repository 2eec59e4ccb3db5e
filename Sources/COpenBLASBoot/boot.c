// Chooses fast OpenBLAS kernels before OpenBLAS initialises.
//
// Debian's OpenBLAS (DYNAMIC_ARCH) picks its kernel set once, in its load-time constructor, from
// OPENBLAS_CORETYPE or its own CPU table; on CPUs newer than the table it falls back to Prescott (SSE3)
// kernels, ~5x slower than the AVX-512 ones. Setting the variable from Swift is too late, so an ELF
// `.preinit_array` hook (runs in executables, before any shared library constructor) asks OpenBLAS's
// own detection first, overrides it only when it is slower than the CPU allows, and then runs OpenBLAS's
// regular initialisation itself, so that its constructor later finds everything done.
#include "COpenBLASBoot.h"

#include <string.h>

static CondenseOpenBLASBootReport bootReport = { CondenseOpenBLASCoreNotManaged, "", 0 };

CondenseOpenBLASBootReport condense_openblas_boot_report(void) {
    return bootReport;
}

#if defined(__linux__) && defined(__x86_64__)

#include <cpuid.h>
#include <stdlib.h>
#include <strings.h>

extern char **environ;

// OpenBLAS internals exported by DYNAMIC_ARCH builds. Weak: a build without them simply is not managed.
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern char *gotoblas_corename(void) __attribute__((weak));
extern void gotoblas_init(void) __attribute__((weak));

enum VectorISA { ISA_OLDER, ISA_AVX2, ISA_AVX512 };

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/// The widest vector ISA both the CPU and the OS (saved register state) support.
static enum VectorISA detect_vector_isa(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return ISA_OLDER;
    const int osxsave = (ecx >> 27) & 1, fma = (ecx >> 12) & 1, avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return ISA_OLDER;
    const unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return ISA_OLDER;  // XMM and YMM state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return ISA_OLDER;
    const int avx2 = (ebx >> 5) & 1, avx512f = (ebx >> 16) & 1;
    if (avx512f && (xcr0 & 0xE0) == 0xE0) return ISA_AVX512;  // opmask + ZMM state
    if (avx2 && fma) return ISA_AVX2;
    return ISA_OLDER;
}

static int name_in(const char *name, const char *const *names) {
    for (; *names; ++names)
        if (strcasecmp(name, *names) == 0) return 1;
    return 0;
}

/// The core to force instead of `detected`, or NULL when `detected` already uses the CPU's widest vectors.
static const char *replacement_core(const char *detected, enum VectorISA isa) {
    static const char *const avx512Cores[] = { "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
    static const char *const avx2Cores[] = { "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
    switch (isa) {
    case ISA_AVX512: return name_in(detected, avx512Cores) ? NULL : "SkylakeX";
    case ISA_AVX2: return name_in(detected, avx2Cores) ? NULL : "Haswell";
    case ISA_OLDER: return NULL;
    }
    return NULL;
}

// Worker threads spin this long (2^N time-stamp ticks; OpenBLAS's default is 2^28, ~0.1 s) after each
// call before sleeping. 2^20 (~0.4 ms) still bridges the gaps between the GEMMs of one forward pass but
// no longer steals a core from other work (event loop, attention threads) after the BLAS work ends.
static const char *const defaultThreadTimeout = "20";

static void select_openblas_kernels(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !gotoblas_corename || !gotoblas_init) return;
    // libc has not initialised `environ` yet when pre-initialisers run.
    if (environ == NULL) environ = envp;

    bootReport.threadTimeoutSupplied = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
    if (bootReport.threadTimeoutSupplied) setenv("OPENBLAS_THREAD_TIMEOUT", defaultThreadTimeout, 1);

    if (getenv("OPENBLAS_CORETYPE") != NULL) {
        bootReport.selection = CondenseOpenBLASCoreFromEnvironment;
    } else {
        gotoblas_dynamic_init();  // OpenBLAS's own choice; starts no threads
        const char *detected = gotoblas_corename();
        strncpy(bootReport.detectedCore, detected ? detected : "", sizeof bootReport.detectedCore - 1);
        const char *replacement = replacement_core(bootReport.detectedCore, detect_vector_isa());
        if (replacement) {
            gotoblas_dynamic_quit();
            setenv("OPENBLAS_CORETYPE", replacement, 1);
            gotoblas_dynamic_init();
            unsetenv("OPENBLAS_CORETYPE");
            bootReport.selection = CondenseOpenBLASCoreOverridden;
        } else {
            bootReport.selection = CondenseOpenBLASCoreDetected;
        }
    }
    // Full initialisation now (reads OPENBLAS_THREAD_TIMEOUT, starts workers); OpenBLAS's constructor
    // then returns early, keeping the kernels chosen above.
    gotoblas_init();
    if (bootReport.threadTimeoutSupplied) unsetenv("OPENBLAS_THREAD_TIMEOUT");
}

__attribute__((section(".preinit_array"), used))
static void (*const selectOpenBLASKernelsEntry)(int, char **, char **) = select_openblas_kernels;

#endif
