#ifndef CONDENSE_OPENBLAS_BOOT_H
#define CONDENSE_OPENBLAS_BOOT_H

/// How the OpenBLAS kernel set ("core type") of this process was chosen.
typedef enum {
    /// The boot hook did not run (not Linux/x86-64, or OpenBLAS without DYNAMIC_ARCH).
    CondenseOpenBLASCoreNotManaged = 0,
    /// The user set OPENBLAS_CORETYPE; it was left alone.
    CondenseOpenBLASCoreFromEnvironment = 1,
    /// OpenBLAS's own CPU detection picked kernels that suit this CPU.
    CondenseOpenBLASCoreDetected = 2,
    /// OpenBLAS's detection picked slower kernels than the CPU supports; the hook replaced them.
    CondenseOpenBLASCoreOverridden = 3,
} CondenseOpenBLASCoreSelection;

/// What the boot hook decided, filled in before `main` runs.
typedef struct {
    CondenseOpenBLASCoreSelection selection;
    /// The core name OpenBLAS's detection chose (before any override); empty when not probed.
    char detectedCore[32];
    /// Non-zero when the hook supplied OPENBLAS_THREAD_TIMEOUT because the user had not set it.
    int threadTimeoutSupplied;
} CondenseOpenBLASBootReport;

/// The boot hook's decision (a copy; the hook runs once, before `main`).
CondenseOpenBLASBootReport condense_openblas_boot_report(void);

#endif
