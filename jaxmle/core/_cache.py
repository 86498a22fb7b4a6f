"""Opt-in persistent compilation cache, so a new process skips XLA compilation.

A fit compiles once per shape and options; within a process the compiled function is
reused. Across processes (a script run again, a CLI call per file, workers of a pool) JAX
can store compiled programs on disk. jaxmle never turns this on behind the user's back:
it changes JAX's global configuration, so it is the user's call.
"""

from __future__ import annotations

import os

import jax


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> str:
    """Stores every compiled fit in ``directory`` and reuses it in later processes.

    Sets JAX's global ``jax_compilation_cache_dir`` and caches every program, however
    fast it compiled (JAX's default skips those under one second, which includes most
    single fits). Programs are keyed by shapes, options, the model's code and the JAX
    version, so a stale entry is never used.

    Args:
        directory: where to keep the cache; default ``$JAXMLE_CACHE_DIR`` or
            ``~/.cache/jaxmle``.

    Returns:
        The cache directory in use.

    Example:
        >>> import jaxmle as jm
        >>> path = jm.enable_compilation_cache("/tmp/jaxmle-cache")  # doctest: +SKIP
    """
    if directory is None:
        directory = os.environ.get("JAXMLE_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "jaxmle")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
