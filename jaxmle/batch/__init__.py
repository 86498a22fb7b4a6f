"""Batches: the batched driver (chunks, stragglers, devices), streaming, processes,
the shared len/[i] protocol of results, progress reporting."""
