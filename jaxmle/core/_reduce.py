"""Sufficient statistics, found in the log-density's own code.

Many likelihoods are *affine in functions of the data*: a Normal term is
``-log sigma - x^2 / (2 sigma^2) + x mu / sigma^2 - mu^2 / (2 sigma^2) - log(2 pi) / 2``, a
Gamma term ``a log b - lgamma(a) + (a - 1) log x - b x``. Their weighted sum over the
observations is then ``A(theta) + sum_t <C_t(theta), S_t>`` with statistics
``S_t = sum_i w_i F_t(x_i)`` computed in one pass over the data, and every later
evaluation (value, gradient, Hessian) costs nothing per observation.

``reduction`` finds that form by interpreting the jaxpr of ``log_density(params, data)``:
every value is data-only (``_Data``), free of the data (``_Const``: parameters and
constants, kept *compact*, with size-1 axes where it is broadcast), or mixed, kept as
``_Affine`` (``const + sum_t sum_extra coef_t * feat_t``, coefficients free of the data,
features data-only) or ``_Select`` (a choice between such values by a data-only
predicate, e.g. the support test ``where(x >= 0, ..., -inf)``). Mixed values go through
``+ - * /``, integer powers, ``log`` of a single product ``coef * feat``, ``xlogy`` and
``xlog1py`` (taken as ``a log b``, ``a log1p b``), selects, broadcasts, reshapes that
add or drop unit axes, transposes and sums; any other operation on a mixed value (an
``exp``, a ``logsumexp``, the ``log1p(exp(x' beta))`` of a logistic regression) means the
model has no such form and ``reduction`` returns None. Nested ``jit`` calls and functions
with custom derivatives are interpreted through their code (so a custom derivative rule
is not kept; ``xlogy`` at ``x = 0`` has a different derivative there).

The reduced log-likelihood equals the original wherever the original's terms are finite,
up to rounding: ``x^2 - 2 x mu + mu^2`` cancels where ``(x - mu)^2`` does not, and
custom derivative rules of functions applied to mixed values are not kept. It is
therefore only used to find a start (``_solve``): the fit on all observations then
certifies the estimate exactly as from any other start.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Literal

# A reduction is used when its statistics have at most this fraction of the data's elements
# (a start found from them must save passes over the data).
MAX_STATISTICS_FRACTION = 1 / 8
MAX_TERMS = 64  # a longer affine form (products of many sums) is not worth its statistics

_ELEMENTWISE = frozenset((
    "abs", "acos", "acosh", "add", "and", "asin", "asinh", "atan", "atan2", "atanh", "cbrt",
    "ceil", "clamp", "convert_element_type", "cos", "cosh", "digamma", "div", "eq", "erf",
    "erf_inv", "erfc", "exp", "exp2", "expm1", "floor", "ge", "gt", "igamma", "igammac",
    "integer_pow", "is_finite", "le", "lgamma", "log", "log1p", "logistic", "lt", "max",
    "min", "mul", "ne", "neg", "nextafter", "not", "or", "polygamma", "pow", "rem", "round",
    "rsqrt", "select_n", "sign", "sin", "sinh", "sqrt", "square", "sub", "tan", "tanh", "xor",
    "zeta", "bessel_i0e", "bessel_i1e", "copy",
))
# Shape primitives with a rule for compact and mixed values (``_shape_op``).
_SHAPE_PRIMITIVES = frozenset(("broadcast_in_dim", "squeeze", "reshape", "transpose",
                               "reduce_sum", "convert_element_type"))


@functools.cache
def _primitive_of(function: Callable, arity: int) -> tuple:
    """``(primitive, name, params)`` that JAX binds for ``function``, a ``lax`` function of
    one primitive (its parameters differ between JAX versions)."""
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    (eqn,) = jax.make_jaxpr(function)(*[scalar] * arity).eqns
    return eqn.primitive, eqn.primitive.name, dict(eqn.params)


class Unsupported(Exception):
    """The log-density is not affine in functions of the data (no reduction)."""


@dataclasses.dataclass(eq=False)
class _Const:
    """Free of the data: a compact array (size 1 along broadcast axes); ``theta`` when it
    depends on the parameters (else a constant, which data-only code may also use)."""

    value: Any
    theta: bool


@dataclasses.dataclass(eq=False)
class _Data:
    """Data-only: the array, or None where only the coefficients are being computed."""

    value: Any
    shape: tuple
    dtype: Any


@dataclasses.dataclass(eq=False)
class _Term:
    """``sum over the trailing extra axes of coef * feat``: coef compact, feat data-only,
    both of rank ``len(shape) + extra``."""

    coef: Any
    feat: _Data


@dataclasses.dataclass(eq=False)
class _Affine:
    const: Any  # compact array of rank len(shape), or None (zero)
    terms: tuple
    shape: tuple
    dtype: Any


@dataclasses.dataclass(eq=False)
class _Select:
    """``cases[pred]`` elementwise, ``pred`` data-only (bool or int)."""

    pred: _Data
    cases: tuple
    shape: tuple
    dtype: Any


def _is_mixed(v) -> bool:
    return isinstance(v, (_Affine, _Select))


def _mixes(args) -> bool:
    """Whether an operation combines parameters and data: a mixed argument, or a value
    that depends on the parameters beside a data-only one."""
    return any(_is_mixed(a) for a in args) or (
        any(isinstance(a, _Data) for a in args)
        and any(isinstance(a, _Const) and a.theta for a in args))


# ---------------------------------------------------------------------------------- arrays

def _ranked(value, rank: int):
    value = jnp.asarray(value)
    return value.reshape((1,) * rank) if value.ndim == 0 and rank else value


def _expand(value, extra: int):
    """A compact array with ``extra`` trailing unit axes (to meet a term's extra axes)."""
    return value.reshape(value.shape + (1,) * extra)


def _data_op(fn: Callable, *args) -> _Data:
    """``fn`` applied to data-only values and arrays; None in, None out (shape inferred)."""
    arrays = [a.value if isinstance(a, _Data) else a for a in args]
    if any(a is None for a in arrays):
        structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) if isinstance(a, _Data)
                   else a for a in args]
        out = jax.eval_shape(fn, *structs)
        return _Data(None, out.shape, out.dtype)
    out = fn(*arrays)
    return _Data(out, out.shape, out.dtype)


def _shaped(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _struct(leaf):
    """The shape and dtype of an array, a Python number or a shape struct."""
    return _shaped(jnp.shape(leaf), leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf))


def _materialised(v, aval):
    """A data-free value as a full array of ``aval``'s shape (for data-only code)."""
    return jnp.broadcast_to(v.value, aval.shape).astype(aval.dtype)


# ---------------------------------------------------------------------------- affine forms

def _affine(v, shape, dtype) -> _Affine:
    if isinstance(v, _Affine):
        return v
    if isinstance(v, _Select):
        return _lower(v)
    if isinstance(v, _Const):
        return _Affine(_ranked(v.value, len(shape)), (), shape, dtype)
    one = jnp.ones((1,) * len(shape), dtype)
    return _Affine(None, (_Term(one, v),), shape, dtype)


def _add_consts(a, b):
    return b if a is None else a if b is None else a + b


def _sum(a: _Affine, b: _Affine) -> _Affine:
    terms = a.terms + b.terms
    if len(terms) > MAX_TERMS:
        raise Unsupported("too many terms")
    return _Affine(_add_consts(a.const, b.const), terms, a.shape, a.dtype)


def _scaled(a: _Affine, c) -> _Affine:
    """``a * c``, ``c`` a compact data-free array."""
    c = _ranked(c, len(a.shape))
    terms = tuple(_Term(t.coef * _expand(c, t.coef.ndim - c.ndim), t.feat) for t in a.terms)
    return _Affine(None if a.const is None else a.const * c, terms, a.shape, a.dtype)


def _times_data(a: _Affine, d: _Data) -> _Affine:
    terms = tuple(_Term(t.coef, _data_op(lambda f, x: f * _expand(x, f.ndim - x.ndim), t.feat, d))
                  for t in a.terms)
    if a.const is not None:
        terms += (_Term(a.const, _data_op(lambda x: jnp.broadcast_to(x, a.shape), d)),)
    return _Affine(None, terms, a.shape, a.dtype)


def _outer(a, b, extra_a: int, extra_b: int, rank: int):
    """``a * b`` with ``a``'s extra axes before ``b``'s (an outer product over them)."""
    a = a.reshape(a.shape + (1,) * extra_b)
    b = b.reshape(b.shape[:rank] + (1,) * extra_a + b.shape[rank:])
    return a * b


def _product(a: _Affine, b: _Affine) -> _Affine:
    out = _Affine(None, (), a.shape, a.dtype)
    if a.const is not None:
        out = _sum(out, _scaled(b, a.const))
    if b.const is not None:
        out = _sum(out, _Affine(None, _scaled(a, b.const).terms, a.shape, a.dtype))
    rank = len(a.shape)
    for s in a.terms:
        for t in b.terms:
            ea, eb = s.coef.ndim - rank, t.coef.ndim - rank
            coef = _outer(s.coef, t.coef, ea, eb, rank)
            feat = _data_op(lambda f, g: _outer(f, g, ea, eb, rank), s.feat, t.feat)
            out = _sum(out, _Affine(None, (_Term(coef, feat),), a.shape, a.dtype))
    return out


def _log(a: _Affine) -> _Affine:
    """``log(coef * feat)`` of a single product, as ``log coef + log feat``."""
    if a.const is not None or len(a.terms) != 1 or a.terms[0].coef.ndim != len(a.shape):
        raise Unsupported("log of a sum")
    term = a.terms[0]
    one = jnp.ones(term.coef.shape, a.dtype)
    return _Affine(jnp.log(term.coef), (_Term(one, _data_op(jnp.log, term.feat)),),
                   a.shape, a.dtype)


def _lower(s: _Select) -> _Affine:
    """``sum_j [pred == j] case_j`` as an affine form with indicator-masked features."""
    out = _Affine(None, (), s.shape, s.dtype)
    for j, case in enumerate(s.cases):
        case = _affine(case, s.shape, s.dtype)
        chosen = lambda p: (p == j) if p.dtype != bool else (p if j else ~p)
        masked = lambda f, p: jnp.where(_expand(chosen(p), f.ndim - p.ndim), f, 0)
        terms = tuple(_Term(t.coef, _data_op(masked, t.feat, s.pred)) for t in case.terms)
        if case.const is not None:
            indicator = _data_op(lambda p: jnp.broadcast_to(chosen(p), s.shape).astype(s.dtype),
                                 s.pred)
            terms += (_Term(case.const, indicator),)
        out = _sum(out, _Affine(None, terms, s.shape, s.dtype))
    return out


# ----------------------------------------------------------------------------- primitives

def _map_parts(a: _Affine, on_const: Callable, op: Callable, shape, dtype) -> _Affine:
    """A shape op on every part of ``a``: ``on_const(compact)`` on the constant,
    ``op(array, extra, compact)`` on coefficients (compact) and features, whose ``extra``
    trailing axes it leaves in place."""
    terms = []
    for t in a.terms:
        extra = t.coef.ndim - len(a.shape)
        terms.append(_Term(op(t.coef, extra, True),
                           _data_op(lambda f: op(f, extra, False), t.feat)))
    const = None if a.const is None else on_const(_ranked(a.const, len(a.shape)))
    return _Affine(const, tuple(terms), tuple(shape), dtype)


def _broadcast(value, shape, dims, compact: bool):
    """``broadcast_in_dim`` of ``value`` (compact: size-1 axes stay size 1)."""
    target = [1] * len(shape) if compact else list(shape)
    for i, d in enumerate(dims):
        target[d] = value.shape[i] if compact else shape[d]
    return lax.broadcast_in_dim(value, tuple(target), tuple(dims))


def _unit_reshape(old, new):
    """``(dropped, inserted)`` unit axes turning ``old`` into ``new``, or None."""
    if [d for d in old if d != 1] != [d for d in new if d != 1]:
        return None
    return (tuple(i for i, d in enumerate(old) if d == 1),
            tuple(i for i, d in enumerate(new) if d == 1))


def _reshape_units(value, rank, dropped, inserted):
    out = [d for i, d in enumerate(value.shape[:rank]) if i not in dropped]
    for i in inserted:
        out.insert(i, 1)
    return value.reshape(tuple(out) + value.shape[rank:])


def _shape_op(name, params, in_shape, out_shape):
    """``op(array, extra, compact)`` applying a shape primitive to the leading axes of an
    array with ``extra`` trailing axes; raises Unsupported for other primitives."""
    rank = len(in_shape)
    if name == "broadcast_in_dim":
        dims = tuple(params["broadcast_dimensions"])
        return lambda x, e, compact: _broadcast(
            x, tuple(out_shape) + x.shape[rank:],
            dims + tuple(range(len(out_shape), len(out_shape) + e)), compact)
    if name == "squeeze":
        return lambda x, e, compact: lax.squeeze(x, tuple(params["dimensions"]))
    if name == "reshape":
        units = _unit_reshape(tuple(in_shape), tuple(out_shape))
        if units is None:
            raise Unsupported("reshape of a mixed or broadcast value")
        return lambda x, e, compact: _reshape_units(x, rank, *units)
    if name == "transpose":
        perm = tuple(params["permutation"])
        return lambda x, e, compact: jnp.transpose(x, perm + tuple(range(rank, rank + e)))
    if name == "reduce_sum":
        # The summed axes join the extra axes (the sum is taken with the statistics).
        axes = tuple(params["axes"])
        kept = tuple(i for i in range(rank) if i not in axes)
        return lambda x, e, compact: jnp.transpose(x, kept + tuple(range(rank, rank + e)) + axes)
    if name == "convert_element_type":
        dtype = params["new_dtype"]
        if not jnp.issubdtype(dtype, jnp.floating):
            raise Unsupported("conversion of a mixed value")
        return lambda x, e, compact: x.astype(dtype)
    raise Unsupported(name)


def _reduce_compact(value, axes, full_shape):
    """``reduce_sum`` of a compact array over ``axes`` of the full shape."""
    factor = 1
    for ax in axes:
        if value.shape[ax] == 1:
            factor *= full_shape[ax]
    return jnp.sum(value, axis=axes) * factor


def _structural(name, params, v, in_aval, out_aval):
    """A shape primitive on a data-free (compact) or mixed value."""
    in_shape, out_shape = tuple(in_aval.shape), tuple(out_aval.shape)

    def on_const(value):
        if name == "reduce_sum":
            return _reduce_compact(value, tuple(params["axes"]), in_shape)
        if name == "reshape" and _unit_reshape(in_shape, out_shape) is None:
            return jnp.broadcast_to(value, in_shape).reshape(out_shape)
        return _shape_op(name, params, in_shape, out_shape)(value, 0, True)

    if isinstance(v, _Const):
        return _Const(on_const(_ranked(v.value, len(in_shape))), v.theta)
    op = _shape_op(name, params, in_shape, out_shape)
    return _map_parts(_affine(v, in_shape, in_aval.dtype), on_const, op, out_shape,
                      out_aval.dtype)


class _Interpreter:
    """Evaluates a jaxpr on ``_Const`` / ``_Data`` / mixed values (module notes)."""

    def run(self, jaxpr, consts, args):
        env = {}
        read = lambda var: (_Const(np.asarray(var.val), False)
                            if isinstance(var, Literal) else env[var])
        for var, value in zip(jaxpr.constvars, consts):
            env[var] = _Const(value, False)
        for var, value in zip(jaxpr.invars, args):
            env[var] = value
        for eqn in jaxpr.eqns:
            outs = self.apply(eqn, [read(v) for v in eqn.invars])
            for var, out in zip(eqn.outvars, outs):
                env[var] = out
        return [read(v) for v in jaxpr.outvars]

    def apply(self, eqn, args):
        name, params = eqn.primitive.name, eqn.params
        in_avals = [v.aval for v in eqn.invars]
        out_aval = eqn.outvars[0].aval
        if name in ("jit", "pjit", "closed_call", "core_call"):
            closed = params["jaxpr"] if "jaxpr" in params else params["call_jaxpr"]
            return self.run(closed.jaxpr, closed.consts, args)
        if name in ("custom_jvp_call", "custom_vjp_call"):
            closed = params.get("call_jaxpr") or params.get("fun_jaxpr")
            if _mixes(args):
                return [self.custom_mixed(closed, args, in_avals, out_aval)]
            return self.run(closed.jaxpr, closed.consts, args)
        if len(eqn.outvars) != 1:
            raise Unsupported(name)
        return [self.single(eqn.primitive, name, params, args, in_avals, out_aval)]

    def custom_mixed(self, closed, args, in_avals, out_aval):
        """A custom-derivative function of mixed values: ``xlogy`` and ``xlog1py`` by their
        formulas (``a log b``, ``a log1p b``); others through their primal code."""
        func = getattr(closed.jaxpr.debug_info, "func_name", "")
        if func in ("xlogy", "xlog1py") and len(args) == 2:
            log = lax.log if func == "xlogy" else lax.log1p
            logged = self.elementwise(*_primitive_of(log, 1), [args[1]], [in_avals[1]],
                                      in_avals[1])
            return self.elementwise(*_primitive_of(lax.mul, 2), [args[0], logged], in_avals,
                                    out_aval)
        return self.run(closed.jaxpr, closed.consts, args)[0]

    def single(self, prim, name, params, args, in_avals, out_aval):
        if name in _ELEMENTWISE:
            return self.elementwise(prim, name, params, args, in_avals, out_aval)
        if any(isinstance(a, _Select) for a in args):
            args = [_lower(a) if isinstance(a, _Select) else a for a in args]
        if all(isinstance(a, _Const) for a in args) and name in _SHAPE_PRIMITIVES:
            return _structural(name, params, args[0], in_avals[0], out_aval)
        if not _mixes(args):
            return self.unmixed(prim, params, args, in_avals, out_aval)
        if len(args) == 1:
            return _structural(name, params, args[0], in_avals[0], out_aval)
        if name == "dot_general":
            return self.dot_general(params, args, in_avals, out_aval)
        raise Unsupported(name)

    def dot_general(self, params, args, in_avals, out_aval):
        """A contraction with a mixed operand, as a broadcast product and a sum."""
        (contract_l, contract_r), (batch_l, batch_r) = params["dimension_numbers"]
        shapes = [tuple(a.shape) for a in in_avals]
        free = [[i for i in range(len(shape)) if i not in c and i not in b]
                for shape, c, b in zip(shapes, (contract_l, contract_r), (batch_l, batch_r))]
        nb, nl, nr = len(batch_l), len(free[0]), len(free[1])
        contracted = tuple(shapes[0][i] for i in contract_l)
        full = tuple(out_aval.shape) + contracted
        positions = (tuple(range(nb)) + tuple(range(nb, nb + nl)),
                     tuple(range(nb)) + tuple(range(nb + nl, nb + nl + nr)))
        operands = []
        for arg, shape, b, f, c, pos in zip(args, shapes, (batch_l, batch_r), free,
                                            (contract_l, contract_r), positions):
            perm = tuple(b) + tuple(f) + tuple(c)
            dims = pos + tuple(range(len(out_aval.shape), len(full)))
            moved = tuple(shape[i] for i in perm)
            arg = self.reshaped("transpose", {"permutation": perm}, arg, shape, moved)
            operands.append(self.reshaped("broadcast_in_dim", {"broadcast_dimensions": dims},
                                          arg, moved, full))
        full_aval = _shaped(full, out_aval.dtype)
        product = self.elementwise(*_primitive_of(lax.mul, 2), operands, [full_aval] * 2,
                                   full_aval)
        axes = tuple(range(len(out_aval.shape), len(full)))
        return self.reshaped("reduce_sum", {"axes": axes}, product, full, out_aval.shape)

    def reshaped(self, name, params, v, in_shape, out_shape):
        """A shape primitive on any value (used to rewrite contractions)."""
        dtype = v.dtype if isinstance(v, (_Data, _Affine, _Select)) else jnp.result_type(v.value)
        if isinstance(v, _Data):
            op = _shape_op(name, params, in_shape, out_shape)
            if name == "reduce_sum":
                return _data_op(lambda x: jnp.sum(x, axis=params["axes"]), v)
            return _data_op(lambda x: op(x, 0, False), v)
        if isinstance(v, _Select):
            v = _lower(v)
        return _structural(name, params, v, _shaped(in_shape, dtype), _shaped(out_shape, dtype))

    def unmixed(self, prim, params, args, in_avals, out_aval):
        """All data-only (and constants), or all data-free: evaluated as written."""
        if any(isinstance(a, _Data) for a in args):
            return self._data_bind(prim, params, args, in_avals)
        full = [_materialised(a, av) for a, av in zip(args, in_avals)]
        return _Const(prim.bind(*full, **params), any(a.theta for a in args))

    def _data_bind(self, prim, params, args, in_avals):
        datas = [a for a in args if isinstance(a, _Data)]

        def fn(*arrays):
            it = iter(arrays)
            full = [next(it) if isinstance(a, _Data) else _materialised(a, av)
                    for a, av in zip(args, in_avals)]
            return prim.bind(*full, **params)

        return _data_op(fn, *datas)

    def elementwise(self, prim, name, params, args, in_avals, out_aval):
        selects = [a for a in args if isinstance(a, _Select)]
        if selects:
            return self.casewise(prim, name, params, args, in_avals, out_aval, selects[0])
        if all(isinstance(a, _Const) for a in args):
            pred = args[0].value
            if name == "select_n" and isinstance(pred, (np.ndarray, np.generic)) and pred.size == 1:
                return args[1 + int(pred.reshape(()))]  # a case fixed by casewise evaluation
            rank = len(out_aval.shape)
            values = [_ranked(a.value, rank) for a in args]
            joint = np.broadcast_shapes(*[v.shape for v in values])
            values = [jnp.broadcast_to(v, joint) for v in values]
            return _Const(prim.bind(*values, **params), any(a.theta for a in args))
        if not _mixes(args):
            return self._data_bind(prim, params, args, in_avals)
        return self.mixed(name, params, args, in_avals, out_aval)

    def casewise(self, prim, name, params, args, in_avals, out_aval, select):
        other = [a for a in args if isinstance(a, _Select) and a.pred is not select.pred]
        if other:
            args = [_lower(a) if a in other else a for a in args]
        cases = []
        for j in range(len(select.cases)):
            pick = lambda a: (a.cases[j] if isinstance(a, _Select) else
                              _Const(np.asarray(j, select.pred.dtype), False)
                              if a is select.pred else a)
            cases.append(self.elementwise(prim, name, params, [pick(a) for a in args],
                                          in_avals, out_aval))
        return _Select(select.pred, tuple(cases), out_aval.shape, out_aval.dtype)

    def mixed(self, name, params, args, in_avals, out_aval):
        shape, dtype = out_aval.shape, out_aval.dtype
        if name == "select_n":
            pred, cases = args[0], args[1:]
            if isinstance(pred, _Data):
                return _Select(pred, tuple(cases), shape, dtype)
            if not isinstance(pred, _Const):
                raise Unsupported("select on a mixed predicate")
            return self.select_on_theta(pred, cases, shape, dtype)
        if name == "convert_element_type":
            return _structural(name, params, args[0], in_avals[0], out_aval)
        forms = lambda: [_affine(a, shape, dtype) for a in args]
        if name == "add":
            return _sum(*forms())
        if name == "sub":
            a, b = forms()
            return _sum(a, _scaled(b, jnp.asarray(-1, dtype)))
        if name == "neg":
            return _scaled(forms()[0], jnp.asarray(-1, dtype))
        if name in ("mul", "div"):
            a, b = args
            if name == "div":
                if _is_mixed(b):
                    raise Unsupported("division by a mixed value")
                b = (_Const(1.0 / b.value, b.theta) if isinstance(b, _Const)
                     else _data_op(lambda x: 1.0 / x, b))
            if isinstance(a, _Const) or isinstance(b, _Const):
                c, other = (a, b) if isinstance(a, _Const) else (b, a)
                return _scaled(_affine(other, shape, dtype), c.value)
            if isinstance(a, _Data) or isinstance(b, _Data):
                d, other = (a, b) if isinstance(a, _Data) else (b, a)
                return _times_data(_affine(other, shape, dtype), d)
            return _product(_affine(a, shape, dtype), _affine(b, shape, dtype))
        if name in ("square", "integer_pow"):
            y = 2 if name == "square" else params["y"]
            if not 1 <= y <= 4:
                raise Unsupported("power")
            a = base = forms()[0]
            for _ in range(y - 1):
                a = _product(a, base)
            return a
        if name == "log":
            return _log(forms()[0])
        raise Unsupported(name)

    def select_on_theta(self, pred, cases, shape, dtype):
        """``select_n`` by a data-free predicate: the choice moves into the coefficients."""
        rank = len(shape)
        p = _ranked(pred.value, rank)
        out = _Affine(None, (), shape, dtype)
        for j, case in enumerate(cases):
            chosen = (p == j) if p.dtype != bool else (p if j else ~p)
            form = _affine(case, shape, dtype)
            zero = lambda c: jnp.where(_expand(chosen, c.ndim - rank), c, jnp.zeros((), c.dtype))
            terms = tuple(_Term(zero(t.coef), t.feat) for t in form.terms)
            const = None if form.const is None else zero(form.const)
            out = _sum(out, _Affine(const, terms, shape, dtype))
        return out


# ------------------------------------------------------------------------------ the model

@dataclasses.dataclass(frozen=True)
class Reduction:
    """The reduced form of one model: the log-density's jaxpr and, per term, the axes its
    statistic sums over (where the coefficient is broadcast)."""

    closed: Any
    data_avals: tuple  # of the data leaves
    n_obs: int | None
    summed_axes: tuple  # per term


def _form(parts, params, data, weights) -> _Affine:
    """The weighted log-likelihood as a scalar affine form. ``parts``: the jaxpr, the data
    leaves' shapes and ``n_obs``; ``params`` leaves are arrays; ``data`` leaves and
    ``weights`` are arrays or None (coefficients only)."""
    closed, data_avals, n_obs = parts
    args = [_Const(jnp.asarray(p), True) for p in params]
    args += [_Data(d, a.shape, a.dtype) for d, a in zip(data, data_avals)]
    out = _Interpreter().run(closed.jaxpr, closed.consts, args)[0]
    aval = closed.jaxpr.outvars[0].aval
    dtype = aval.dtype
    if n_obs is not None:
        form = _times_data(_affine(out, aval.shape, dtype), _Data(weights, (n_obs,), dtype))
        out = _structural("reduce_sum", {"axes": (0,)}, form, aval, _shaped((), dtype))
    return _affine(out, (), dtype)


def reduction(log_density: Callable, params, data, n_obs: int | None):
    """The ``Reduction`` of ``log_density`` at the shapes of ``params`` and ``data``
    (arrays or shape structs), or None when it has no affine form or its statistics would
    not be much smaller than the data."""
    p_leaves, p_tree = jax.tree_util.tree_flatten(jax.tree_util.tree_map(_struct, params))
    d_leaves, d_tree = jax.tree_util.tree_flatten(jax.tree_util.tree_map(_struct, data))
    closed = jax.make_jaxpr(lambda p, d: log_density(
        jax.tree_util.tree_unflatten(p_tree, p), jax.tree_util.tree_unflatten(d_tree, d)))(
        p_leaves, d_leaves)
    if len(closed.jaxpr.outvars) != 1:
        return None
    parts = (closed, d_leaves, n_obs)
    dtype = closed.jaxpr.outvars[0].aval.dtype
    structure = []

    def probe(p, d, w):
        form = _form(parts, p, d, w)
        structure.extend((t.coef.shape, t.feat.shape) for t in form.terms)
        return jnp.zeros(())

    weights = None if n_obs is None else jax.ShapeDtypeStruct((n_obs,), dtype)
    try:
        jax.eval_shape(probe, p_leaves, d_leaves, weights)
    except Exception:  # noqa: BLE001 - Unsupported, or a primitive this interpreter
        # mishandles: the reduced start is an optimisation, and the fit without it is exact.
        return None
    summed = tuple(tuple(i for i, (c, f) in enumerate(zip(coef, feat)) if c == 1 and f > 1)
                   for coef, feat in structure)
    size = sum(int(np.prod([d for i, d in enumerate(feat) if i not in axes]))
               for (_, feat), axes in zip(structure, summed))
    data_size = sum(int(np.prod(leaf.shape)) for leaf in d_leaves)
    if not structure or size > MAX_STATISTICS_FRACTION * data_size:
        return None
    return Reduction(closed, tuple(d_leaves), n_obs, summed)


def _parts(reduction: Reduction):
    return reduction.closed, reduction.data_avals, reduction.n_obs


def statistics(reduction: Reduction, params, data, weights) -> tuple:
    """``S_t = sum of w_i F_t(x_i)`` over each term's summed axes: one pass over the data
    (``params`` only fixes dtypes and shapes; the coefficients are discarded)."""
    form = _form(_parts(reduction), jax.tree_util.tree_leaves(params),
                 jax.tree_util.tree_leaves(data), weights)
    return tuple(jnp.sum(t.feat.value, axis=axes, keepdims=True)
                 for t, axes in zip(form.terms, reduction.summed_axes))


def loglik(reduction: Reduction, params, stats: tuple) -> jax.Array:
    """The weighted log-likelihood at ``params`` from the statistics alone. A term whose
    statistic is 0 adds 0 (an infinite coefficient of an empty indicator, e.g. the
    ``-inf`` outside a support that no observation falls outside, stays out)."""
    form = _form(_parts(reduction), jax.tree_util.tree_leaves(params),
                 [None] * len(reduction.data_avals), None)
    total = jnp.zeros((), form.dtype) if form.const is None else form.const
    for t, s in zip(form.terms, stats):
        total = total + jnp.sum(jnp.where(s == 0, 0.0, t.coef * s))
    return total
