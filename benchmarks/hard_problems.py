"""Hard nonlinear problems: jaxmle's solvers and their peers from the same starts, side by side.

Collections: Moré, Garbow & Hillstrom (1981), all 35 problems from 1x, 10x and 100x their
standard start (``mgh.py``), and the 27 NIST StRD nonlinear regressions from both certified
starts (``nist.py``, ``nist/``); with ``--random-starts N``, instead, N random starts of
each MGH problem (``random_cases``: a test bed beyond the published starts). Each start is
fitted twice:

* ``ls``: plain least squares, log-likelihood ``-sum r_i(x)^2 / 2`` (``sigma`` fixed at 1);
* ``gauss``: a Gaussian log-likelihood with ``sigma`` free (``jm.positive``), ``sigma``
  started at the root mean square residual of the start; only where the minimum RSS is
  positive and ``m > n`` (otherwise the likelihood grows without bound as
  ``sigma -> 0``).

Solvers: jaxmle ``newton``, ``bfgs`` and ``lbfgs`` with their defaults (``jm.fit``), and
``newton-path``, Newton without the second fit it makes after a failure (``core/_retry``),
which shows what that fit adds, and ``newton-batch``, the start as a batch of one
(``jm.fit_batch``: the quick pass first, the batch's cap of 1,000 iterations, no second fit
after BOUNDARY), which shows what a batch of such fits gets; scipy
``least_squares(method="lm")`` (MINPACK) and ``minimize(method="trust-exact")`` given exact
JAX gradients and Hessians (of ``RSS / 2``, or of the negative log-likelihood in
``(x, log sigma)``); optimistix Levenberg-Marquardt and Dogleg (``rtol = atol = 1e-8``,
``max_steps=256`` by default). Least-squares solvers fit ``x`` and report
``sigma = sqrt(RSS / m)``, the maximum over ``sigma`` given ``x``.

Columns, per solver and variant:

* ``solved``: the known minimum reached: ``RSS <= f_min (1 + 1e-8) + 1e-16`` (the absolute
  term serves minima of 0 and NIST Lanczos1, whose RSS of 1e-25 is rounding), every
  parameter within ``1e-6`` of the known minimiser where it is unique (relative; absolute
  for a zero), and (``gauss``) ``sigma`` so near its maximum given
  ``x``, ``sqrt(RSS / m)``, that the log-likelihood lost is within ``1e-8`` of it; where the
  minimum RSS is rounding (below ``1e-16``: Lanczos1's 1e-25 is rounded at ~1e-3, and so is
  that maximum), within ``1e-2`` of it.
  ``f_min`` is the collection's value, or a lower RSS found by any solver in the run.
* ``false conv``: the solver reports success (jaxmle: ``CONVERGED``) where it is not
  solved and another solver from the same start reaches a lower RSS (by ``1e-8``
  relative), or at a point whose Hessian is not positive semidefinite.
* ``missed``: starts some other solver solves and this one does not.
* ``median it`` / ``evals``: iterations and derivative evaluations, medians over the
  starts the solver solves: Hessian passes for jaxmle Newton (iterations + 1; a fit
  that Newton's path failed and a second fit solved, ``core/_retry``, counts that fit's
  BFGS iterations too) and trust-exact, Jacobians for scipy LM, steps + 1 for
  optimistix, iterations + 1 for jaxmle's BFGS / L-BFGS (their line-search evaluations
  are not counted);
  ``time``: total seconds of the compiled calls (a second call of each fit).

Run:  python benchmarks/hard_problems.py [--solvers newton,lm,...] [--only mgh|nist]
      [--problems NAME,...] [--random-starts N [--seed S]] [--json out.json]
      [--cached out.json --rerun newton] [--write-results]
(peers: pip install -e ".[peers]"). A full run takes about 25 minutes on the project's
2-core CPU, mostly compiling one fit per problem, variant and solver.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import statistics
import sys
import textwrap
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

jax.config.update("jax_enable_x64", True)

import jaxmle as jm  # noqa: E402
from jaxmle.core import _retry  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402

SOLVERS = ("newton", "newton-path", "newton-batch", "bfgs", "lbfgs", "lm", "trust-exact",
           "optx-lm", "optx-dogleg")
VARIANTS = ("ls", "gauss")
F_RTOL, F_ATOL, X_RTOL = 1e-8, 1e-16, 1e-6
# Below F_ATOL a minimum RSS is rounding: its residuals carry about 1e-3 of relative
# rounding (Lanczos1: residuals ~8e-14 of data ~1), and so does sigma_hat = sqrt(RSS / m);
# sigma is then judged to this relative tolerance instead of by the log-likelihood lost.
SIGMA_RTOL_AT_ROUNDING = 1e-2


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem from one start: ``residuals(x) -> (m,)``."""

    collection: str
    name: str
    start: str
    residuals: Callable
    x0: np.ndarray
    m: int
    f_min: float
    x_min: np.ndarray | None


def cases(only: str | None = None, names: set[str] | None = None) -> list[Case]:
    import mgh
    import nist
    found = []
    if only in (None, "mgh"):
        for p in mgh.problems():
            for scale in (1, 10, 100):
                found.append(Case("mgh", f"{p.number:02d} {p.name}", f"{scale}x", p.residuals,
                                  p.start(scale), p.m, p.f_min, p.x_min))
    if only in (None, "nist"):
        for p in nist.problems():
            residuals = (lambda p: lambda b: p.response - p.mean(b, p.x))(p)
            for i, start in enumerate(p.starts, 1):
                found.append(Case("nist", p.name, f"start {i}", residuals, start,
                                  len(p.response), p.certified_rss, p.certified))
    return [c for c in found
            if names is None or c.name in names or c.name.split(" ", 1)[-1] in names]


def random_cases(per_problem: int, seed: int) -> list[Case]:
    """``per_problem`` random starts of each Moré-Garbow-Hillstrom problem: every nonzero
    coordinate of the standard start scaled by ``10^U(-1, 1.5)`` (signs kept), every zero
    one drawn from N(0, 1); starts whose residuals are not finite are skipped."""
    import mgh
    rng = np.random.default_rng(seed)
    found = []
    for p in mgh.problems():
        x0 = p.start(1)
        for i in range(per_problem):
            start = np.where(x0 != 0, x0 * 10 ** rng.uniform(-1, 1.5, x0.shape),
                             rng.normal(size=x0.shape))
            case = Case("mgh-random", f"{p.number:02d} {p.name}", f"random {i}", p.residuals,
                        start, p.m, p.f_min, p.x_min)
            if math.isfinite(_rss(case, start)):
                found.append(case)
    return found


@dataclasses.dataclass
class Outcome:
    x: np.ndarray
    sigma: float | None
    success: bool
    label: str
    iterations: int
    evals: int
    seconds: float


def _rss(case: Case, x) -> float:
    r = np.asarray(jax.jit(case.residuals)(jnp.asarray(x)))
    return float(r @ r) if np.all(np.isfinite(r)) else math.inf


def _timed(call):
    call()  # compile
    t = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t


# ----- jaxmle ---------------------------------------------------------------------------
_LOG_DENSITIES: dict = {}


def _log_density(case: Case, variant: str):
    """One function per problem and variant, so the starts share a compiled fit."""
    key = (case.collection, case.name, variant)
    if key not in _LOG_DENSITIES:
        r = case.residuals
        if variant == "ls":
            _LOG_DENSITIES[key] = lambda p, data: -0.5 * r(p["x"]) ** 2
        else:
            _LOG_DENSITIES[key] = lambda p, data: stats.norm.logpdf(r(p["x"]), 0.0, p["sigma"])
    return _LOG_DENSITIES[key]


def run_jaxmle(case: Case, variant: str, method: str, repeat: bool = True) -> Outcome:
    """``jm.fit`` with defaults; ``repeat``: time a second, compiled call. ``method``
    ``"newton-path"``: Newton without its second fit after a failure (``core/_retry``);
    ``"newton-batch"``: ``jm.fit_batch`` on a batch of this one start."""
    if method == "newton-path":
        retry = _retry.applies
        _retry.applies = lambda spec: False
        try:
            return run_jaxmle(case, variant, "newton", repeat)
        finally:
            _retry.applies = retry
    init = {"x": case.x0}
    options = {}
    if variant == "gauss":
        init["sigma"] = max(math.sqrt(_rss(case, case.x0) / case.m), 1e-300)
        options["constraints"] = {"sigma": jm.positive}
    if method == "newton-batch":
        call = lambda: jax.tree_util.tree_map(lambda leaf: leaf[0], jm.fit_batch(
            _log_density(case, variant), init, np.zeros((1, case.m)), **options))
    else:
        call = lambda: jm.fit(_log_density(case, variant), init, np.zeros(case.m),
                              method=method, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit, seconds = _timed(call) if repeat else (call(), math.nan)
    status = jm.Status(int(fit.status))
    sigma = float(fit.params["sigma"]) if variant == "gauss" else None
    n = int(fit.n_iter)
    return Outcome(np.asarray(fit.params["x"]), sigma, status == jm.Status.CONVERGED,
                   status.name, n, n + 1, seconds)


# ----- scipy ----------------------------------------------------------------------------
def _scipy_timed(call):
    """``(result, seconds)`` of a compiled scipy call with its warnings silenced, or
    ``(None, error)`` when it raises (a far start can make MINPACK's or trust-exact's
    linear algebra fail)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return _timed(call)
        except (ValueError, np.linalg.LinAlgError) as error:
            return None, error


def run_lm(case: Case, variant: str) -> Outcome:
    from scipy.optimize import least_squares
    fun = jax.jit(case.residuals)
    jac = jax.jit(jax.jacfwd(case.residuals))
    call = lambda: least_squares(lambda x: np.asarray(fun(x)), case.x0,
                                 jac=lambda x: np.asarray(jac(x)), method="lm")
    result, seconds = _scipy_timed(call)
    if result is None:
        return Outcome(case.x0, None, False, f"error: {seconds}"[:40], 0, 0, 0.0)
    return _least_squares_outcome(case, variant, result.x, result.status > 0,
                                  f"status {result.status}", result.nfev,
                                  result.njev or 0, seconds)


def _least_squares_outcome(case, variant, x, success, label, iterations, evals, seconds):
    sigma = math.sqrt(_rss(case, x) / case.m) if variant == "gauss" else None
    return Outcome(np.asarray(x), sigma, bool(success), label, int(iterations), int(evals), seconds)


def _negative_loglik(case: Case, variant: str):
    r = case.residuals
    if variant == "ls":
        return lambda v: 0.5 * jnp.sum(r(v) ** 2)
    return lambda v: -jnp.sum(stats.norm.logpdf(r(v[:-1]), 0.0, jnp.exp(v[-1])))


def run_trust_exact(case: Case, variant: str) -> Outcome:
    from scipy.optimize import minimize
    loss = _negative_loglik(case, variant)
    value, grad, hess = jax.jit(loss), jax.jit(jax.grad(loss)), jax.jit(jax.hessian(loss))
    v0 = case.x0 if variant == "ls" else np.append(
        case.x0, math.log(max(math.sqrt(_rss(case, case.x0) / case.m), 1e-300)))
    call = lambda: minimize(lambda v: float(value(v)), v0, method="trust-exact",
                            jac=lambda v: np.asarray(grad(v)), hess=lambda v: np.asarray(hess(v)))
    result, seconds = _scipy_timed(call)
    if result is None:
        return Outcome(case.x0, None, False, f"error: {seconds}"[:40], 0, 0, 0.0)
    x = result.x if variant == "ls" else result.x[:-1]
    sigma = None if variant == "ls" else float(np.exp(result.x[-1]))
    return Outcome(np.asarray(x), sigma, bool(result.success), f"status {result.status}",
                   int(result.nit), int(result.get("nhev", result.nit)), seconds)


# ----- optimistix -----------------------------------------------------------------------
_OPTX_SOLVES: dict = {}


def run_optimistix(case: Case, variant: str, kind: str) -> Outcome:
    import optimistix as optx
    key = (case.collection, case.name, case.start, kind)
    if key not in _OPTX_SOLVES:  # least squares: one solve serves both variants
        solver = (optx.LevenbergMarquardt if kind == "lm" else optx.Dogleg)(rtol=1e-8, atol=1e-8)

        @jax.jit
        def solve(x0):
            solution = optx.least_squares(lambda x, _: case.residuals(x), solver, x0, throw=False)
            return (solution.value, solution.result == optx.RESULTS.successful,
                    solution.stats["num_steps"])

        (x, success, steps), seconds = _timed(
            lambda: jax.block_until_ready(solve(jnp.asarray(case.x0))))
        _OPTX_SOLVES[key] = (np.asarray(x), bool(success),
                             "successful" if success else "failed", int(steps), seconds)
    x, success, label, steps, seconds = _OPTX_SOLVES[key]
    return _least_squares_outcome(case, variant, x, success, label, steps, steps + 1, seconds)


def run(case: Case, variant: str, solver: str) -> Outcome:
    if solver in ("newton", "newton-path", "newton-batch", "bfgs", "lbfgs"):
        return run_jaxmle(case, variant, solver)
    if solver == "lm":
        return run_lm(case, variant)
    if solver == "trust-exact":
        return run_trust_exact(case, variant)
    return run_optimistix(case, variant, solver.removeprefix("optx-"))


# ----- judging --------------------------------------------------------------------------
def solved(case: Case, outcome: Outcome, f_best: float) -> bool:
    rss = _rss(case, outcome.x)
    f_min = min(case.f_min, f_best)
    if not rss <= f_min * (1 + F_RTOL) + F_ATOL:
        return False
    if case.x_min is not None and not np.all(
            np.abs(outcome.x - case.x_min)
            <= X_RTOL * np.where(case.x_min != 0, np.abs(case.x_min), 1.0)):
        return False
    if outcome.sigma is not None:
        # sigma off its maximum given x costs m (log(s / s_hat) + s_hat^2 / (2 s^2) - 1/2)
        # in log-likelihood; at most 1e-8 of the log-likelihood, like the RSS.
        sigma_hat = math.sqrt(rss / case.m)
        ratio = outcome.sigma / sigma_hat
        if f_min <= F_ATOL:
            return abs(ratio - 1) <= SIGMA_RTOL_AT_ROUNDING
        lost = case.m * (math.log(ratio) + 0.5 / ratio ** 2 - 0.5)
        return lost <= F_RTOL * 0.5 * case.m * abs(math.log(2 * math.pi * sigma_hat ** 2) + 1)
    return True


def not_a_local_minimum(case: Case, variant: str, outcome: Outcome) -> bool:
    """The Hessian of the negative log-likelihood at the outcome has a clearly negative
    eigenvalue (relative to its largest)."""
    loss = _negative_loglik(case, variant)
    v = outcome.x if variant == "ls" else np.append(outcome.x, math.log(max(outcome.sigma, 1e-300)))
    h = np.asarray(jax.hessian(loss)(jnp.asarray(v)))
    if not np.all(np.isfinite(h)):
        return True
    d = np.sqrt(np.maximum(np.abs(np.diag(h)), 1e-300))
    eig = np.linalg.eigvalsh(h / np.outer(d, d))
    return eig[0] < -1e-6 * max(np.abs(eig).max(), 1e-300)


def evaluate(selected: list[Case], solvers: list[str], variants: list[str], cached=()):
    """Runs every solver on every case (or takes its outcome from ``cached`` records)."""
    known = {(r["collection"], r["problem"], r["start"], r["variant"], r["solver"]): r
             for r in cached}
    records = []
    for case in selected:
        # sigma free has a maximum only where the minimum RSS is positive (so m > n)
        bounded = case.f_min > 0 and case.m > len(case.x0)
        for variant in [v for v in variants if v == "ls" or bounded]:
            outcomes = {}
            for solver in solvers:
                old = known.get((case.collection, case.name, case.start, variant, solver))
                if old is not None:
                    outcomes[solver] = Outcome(np.array(old["x"]), old["sigma"], old["success"],
                                               old["label"], old["iterations"], old["evals"],
                                               old["seconds"])
                    continue
                try:
                    outcomes[solver] = run(case, variant, solver)
                except Exception as error:  # a peer's crash is its result, not the run's end
                    # (jm.fit refuses a start outside the support with a ValueError: sigma
                    # started at the RMS residual is inf where the start's RSS overflows)
                    outcomes[solver] = Outcome(case.x0, None, False,
                                               f"raised {type(error).__name__}: {error}"[:72],
                                               0, 0, 0.0)
            rss = {s: _rss(case, o.x) for s, o in outcomes.items()}
            f_best = min([r for r in rss.values() if math.isfinite(r)], default=math.inf)
            if f_best < case.f_min * (1 - 1e-6) - F_ATOL:
                print(f"  note: {case.name} {case.start}: RSS {f_best:.10g} below f_min "
                      f"{case.f_min:.10g}", flush=True)
            for solver, outcome in outcomes.items():
                ok = solved(case, outcome, f_best)
                lower_elsewhere = any(r < rss[solver] * (1 - F_RTOL) - F_ATOL
                                      for s, r in rss.items() if s != solver)
                false = outcome.success and not ok and (
                    lower_elsewhere or not_a_local_minimum(case, variant, outcome))
                records.append({
                    "collection": case.collection, "problem": case.name, "start": case.start,
                    "variant": variant, "solver": solver, "solved": ok, "false": bool(false),
                    "success": outcome.success, "label": outcome.label,
                    "x": np.asarray(outcome.x, float).tolist(), "sigma": outcome.sigma,
                    "rss": rss[solver], "iterations": outcome.iterations,
                    "evals": outcome.evals, "seconds": outcome.seconds})
            line = " ".join(f"{s}={'Y' if r['solved'] else ('F' if r['false'] else '.')}"
                            for s, r in zip(solvers, records[-len(solvers):]))
            print(f"{case.collection:4s} {case.name:32s} {case.start:7s} {variant:5s} {line}",
                  flush=True)
    return records


def table(records, solvers, variants) -> str:
    lines = []
    for collection in sorted({r["collection"] for r in records}):
        for variant in variants:
            rows = [r for r in records if r["collection"] == collection and r["variant"] == variant]
            if not rows:
                continue
            starts = sorted({(r["problem"], r["start"]) for r in rows})
            solved_by = {key: {r["solver"] for r in rows
                               if (r["problem"], r["start"]) == key and r["solved"]}
                         for key in starts}
            any_solved = sum(1 for key in starts if solved_by[key])
            lines += [f"\n{collection} / {variant}: {len(starts)} starts, {any_solved} solved "
                      "by at least one solver\n",
                      "| solver | solved | missed | false conv | median it | median evals "
                      "| time (s) |",
                      "|---|---|---|---|---|---|---|"]
            for solver in solvers:
                mine = [r for r in rows if r["solver"] == solver]
                if not mine:
                    continue
                good = [r for r in mine if r["solved"]]
                missed = sum(1 for r in mine if not r["solved"]
                             and solved_by[(r["problem"], r["start"])] - {solver})
                med = lambda key: statistics.median(r[key] for r in good) if good else math.nan
                lines.append(f"| {solver} | {len(good)}/{len(mine)} | {missed} | "
                             f"{sum(r['false'] for r in mine)} | {med('iterations'):.0f} | "
                             f"{med('evals'):.0f} | {sum(r['seconds'] for r in mine):.2f} |")
    return "\n".join(lines)


def paired_iterations(records, solver: str, peer: str) -> str:
    """Median iterations of ``solver`` and ``peer`` over the starts both solve (the table's
    medians are over each solver's own solved starts, which differ)."""
    key = lambda r: (r["collection"], r["variant"], r["problem"], r["start"])
    solved = {(key(r), r["solver"]): r["iterations"] for r in records if r["solved"]}
    lines = [f"| set | starts both solve | {solver} median it | {peer} median it |",
             "|---|---|---|---|"]
    for collection, variant in sorted({key(r)[:2] for r in records}):
        both = [k for (k, s) in solved if s == solver and k[:2] == (collection, variant)
                and (k, peer) in solved]
        if both:
            median = lambda s: statistics.median(solved[(k, s)] for k in both)
            lines.append(f"| {collection} / {variant} | {len(both)} | {median(solver):g} | "
                         f"{median(peer):g} |")
    return "\n".join(lines)


def failures(records, solver: str) -> str:
    """The starts ``solver`` does not solve, with the solvers that do."""
    key = lambda r: (r["collection"], r["problem"], r["start"], r["variant"])
    solved_by = {}
    for r in records:
        if r["solved"]:
            solved_by.setdefault(key(r), []).append(r["solver"])
    rows = [r for r in records if r["solver"] == solver and not r["solved"]]
    return "\n".join(f"  {r['collection']} {r['problem']} {r['start']} {r['variant']}: "
                     f"{r['label']} after {r['iterations']} it, RSS {r['rss']:.6g}"
                     f"{'  FALSE CONVERGENCE' if r['false'] else ''}"
                     f"  (solved by: {', '.join(solved_by.get(key(r), [])) or 'none'})"
                     for r in rows)


RESULTS = HERE / "RESULTS.md"


def report(records, solvers, variants, command: str = "") -> str:
    """The markdown section: what ran, the tables, and Newton's unsolved starts."""
    intro = (f"{_report.machine('scipy', 'optimistix')}; float64. Definitions "
             "in the script's docstring: *solved* is the known minimum reached; *missed* counts "
             "starts another solver solves and this one does not; *false conv* a reported "
             "success that is not solved where another solver reaches a lower RSS, or at a "
             "point that is not a local minimum. Iterations and evaluations are medians over "
             "solved starts; time is the sum of compiled calls.")
    options = " ".join(filter(None, [
        command, f"--solvers {','.join(solvers)}" if tuple(solvers) != SOLVERS else "",
        f"--variants {','.join(variants)}" if tuple(variants) != VARIANTS else "",
        "--write-results"]))
    lines = [f"## Hard problems: `python benchmarks/hard_problems.py {options}`", "",
             textwrap.fill(intro, 92), table(records, solvers, variants)]
    if {"newton", "trust-exact"} <= set(solvers):
        lines += ["", "Newton against scipy's trust-exact on the starts both solve:", "",
                  paired_iterations(records, "newton", "trust-exact")]
    if "newton" in solvers:
        lines += ["", "Starts jaxmle's Newton does not solve (and who does):", "", "```",
                  failures(records, "newton"), "```"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--only", choices=("mgh", "nist"))
    parser.add_argument("--problems", help="comma-separated names (e.g. Rosenbrock,Misra1a)")
    parser.add_argument("--json", help="write every record to this file")
    parser.add_argument("--cached", help="take the outcomes of solvers not re-run from this "
                        "file (written by --json)")
    parser.add_argument("--rerun", default="", help="solvers to re-run despite --cached")
    parser.add_argument("--random-starts", type=int, default=0,
                        help="instead of the standard starts: this many random starts of "
                        "each MGH problem (random_cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true",
                        help="write the tables into benchmarks/RESULTS.md")
    args = parser.parse_args()
    solvers, variants = args.solvers.split(","), args.variants.split(",")
    names = set(args.problems.split(",")) if args.problems else None
    cached = []
    if args.cached:
        rerun = set(args.rerun.split(","))
        cached = [r for r in json.loads(pathlib.Path(args.cached).read_text())
                  if r["solver"] not in rerun]
    if args.random_starts:
        selected = random_cases(args.random_starts, args.seed)
        command = f"--random-starts {args.random_starts} --seed {args.seed}"
    else:
        selected, command = cases(args.only, names), ""
    records = evaluate(selected, solvers, variants, cached)
    text = report(records, solvers, variants, command)
    print(text)
    if args.write_results:
        _report.write_section(RESULTS, "hard_problems_random" if args.random_starts
                              else "hard_problems", text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
