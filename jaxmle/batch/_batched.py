"""``Batched``: ``len()``, ``[i]`` and iteration, shared by every result that can hold a batch.

A result (``Fit``, ``Profile``, ``Bootstrap``, ``Diagnosis``, ``Calibration``,
``Multistart``, ``Comparison``) is a frozen dataclass registered as a JAX pytree whose
array leaves all carry the batch axis first when it is batched. ``result[i]`` is then
dataset ``i``'s result, of the same type without the axis, and ``len(result)`` is ``B``.
"""

from __future__ import annotations

import dataclasses

import jax


class Batched:
    """Mixin: the batch protocol of a result; subclasses define ``batch_shape``."""

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for a batched result, ``()`` for a single one."""
        raise NotImplementedError

    def _require_batch(self, what: str) -> None:
        if not self.batch_shape:
            name = type(self).__name__
            raise TypeError(f"{what} a single {name}; only a batched {name} (of many "
                            "datasets) has a length and can be indexed")

    def __len__(self) -> int:
        self._require_batch("len() of")
        return self.batch_shape[0]

    def __getitem__(self, index):
        """Dataset ``index``'s result (an int), or a sub-batch (a slice or an index array)."""
        self._require_batch("indexing")
        return jax.tree_util.tree_map(lambda leaf: leaf[index], self)

    def __iter__(self):
        # Explicit: the fallback sequence protocol would never stop on JAX arrays, whose
        # out-of-range indexing clamps instead of raising IndexError.
        return (self[i] for i in range(len(self)))


def register(cls, *, meta_fields: tuple[str, ...] = ()):
    """Registers dataclass ``cls`` as a pytree: every field is data except ``meta_fields``."""
    names = [field.name for field in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(
        cls, data_fields=[name for name in names if name not in meta_fields],
        meta_fields=list(meta_fields))
    return cls
