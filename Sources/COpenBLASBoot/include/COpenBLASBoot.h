// Placeholder: filled by the OpenBLAS kernel-selection work.
