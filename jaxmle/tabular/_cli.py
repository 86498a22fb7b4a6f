"""The ``jaxmle`` command line: fit every group of a CSV or Parquet table, list the ready
models.

    jaxmle fit sales.csv --model poisson --value units --group store -o rates.csv
    jaxmle models

Exit codes (``EXIT_*`` below):
    0    results written, every group converged;
    1    results written, some groups did not converge (the ``status`` column says why);
    2    usage, input or model error: one line on stderr, nothing written;
    130  interrupted: finished chunks are kept, rerun the same command with ``--resume``.

``jaxmle fit`` reads the table, orders its rows by group and fits the groups in chunks
(``jaxmle.tabular._groups``). Each finished chunk is written at once to a sidecar directory
``OUT.jaxmle-chunks`` with a manifest keyed by a hash of the input file, the model and the
options; ``--resume`` skips the chunks found there. The output is assembled from the chunk
files (so a resumed run writes exactly what an uninterrupted one does), written to a
temporary file in the output's directory and moved into place (``os.replace``): a reader
never sees a half-written output. The sidecar is removed once the output is in place.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import sys
import time

import numpy as np

import jaxmle
from jaxmle import models
from jaxmle.batch import _progress
from jaxmle.batch._stream import fit_stream
from jaxmle.core._cache import enable_compilation_cache
from jaxmle.core._status import Status
from jaxmle.survival._survival import CENSORABLE, censored
from jaxmle.tabular import _frames, _groups

EXIT_OK, EXIT_FAILED_GROUPS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
READY = {name: model for name, model in vars(models).items() if isinstance(model, models.ReadyModel)}
FACTORIES = {"categorical": models.categorical, "gaussian_mixture": models.gaussian_mixture}
CHUNKS_SUFFIX = ".jaxmle-chunks"

FIT_EXAMPLES = """\
examples:
  jaxmle fit heights.csv --model normal --value height --group school -o schools.csv
  jaxmle fit visits.parquet --model poisson --value visits --group clinic -o rates.parquet
  jaxmle fit trials.csv --model binomial --value successes --value trials --group arm -o p.csv
  jaxmle fit sales.csv --model linear_regression --x price --intercept --value units \\
      --group store --chunk-groups 5000 -o slopes.csv        # then, after a crash: --resume
  jaxmle fit waits.csv --model mymodel.py:log_density --value wait --group queue -o out.csv
  jaxmle fit churn.csv --model weibull --value months --event cancelled --group plan -o w.csv
  jaxmle fit visits.csv --model poisson_regression --x age --intercept --value visits \
      --cluster household -o p.csv                       # cluster-robust standard errors

model file (--model FILE.py:FUNCTION): a plain Python file defining
  FUNCTION(params, data)  per-observation log-density terms in jax.numpy; data is one
                          group's values (n,), a tuple of value columns, or (X, y) with --x
  init                    starting values (a pytree, e.g. {"rate": 1.0}) or init(data)
  constraints             optional, e.g. {"rate": jm.positive}
or FUNCTION may name a jm.models.ReadyModel (then init and constraints are its own).

censored durations (--event COL, 1 observed, 0 right-censored; --entry COL for delayed
entry): the ready models exponential, weibull, gamma, lognormal and normal become
jm.censored(model), with data (value, event[, entry]).
clusters (--cluster COL): cluster-robust standard errors (cov "cluster"); the labels may
be numbers or text, and every group needs at least 2 clusters.

rows: a row whose value or covariate is missing, not a number or not finite is excluded
and counted in the group's n_excluded column; a group left with fewer usable rows than
parameters gets status TOO_FEW_OBSERVATIONS. Every group appears exactly once.

exit codes: 0 all groups converged; 1 some groups did not (see the status column);
2 usage, input or model error (nothing written); 130 interrupted (rerun with --resume)."""


class CliError(Exception):
    """A user error, reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Runs ``jaxmle`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Example:
        >>> from jaxmle.tabular._cli import main
        >>> main(["models"]) == 0                       # doctest: +ELLIPSIS
        bernoulli ...
        True
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("jaxmle: interrupted; finished chunks are kept: rerun the same command with "
              "--resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # every failure is one line, never a traceback
        lines = str(error).strip().splitlines()
        kind = "" if isinstance(error, CliError) else f"{type(error).__name__}: "
        print(f"jaxmle: error: {kind}{lines[0] if lines else ''}", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxmle", description="Maximum-likelihood fits on JAX, from the "
                     "command line.", epilog="run 'jaxmle COMMAND --help' for each command")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    fit = commands.add_parser(
        "fit", help="fit a model to every group of a CSV or Parquet table",
        description="Fits MODEL to every group of DATA (one row per observation) and writes\n"
        "one row per group: estimates, standard errors, Wald intervals, log-likelihood,\n"
        "AIC, BIC, n, iterations, status. A progress line goes to stderr, a summary to stdout.",
        epilog=FIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("data", metavar="DATA", type=pathlib.Path, help="input table, .csv or .parquet")
    fit.add_argument("--model", required=True, metavar="NAME|FILE.py:FUNCTION",
                     help="a ready model (see 'jaxmle models'), or a log-density in a Python file")
    fit.add_argument("--value", required=True, action="append", metavar="COL",
                     help="the observed values (repeat for models of several columns, e.g. "
                     "binomial: successes then trials)")
    fit.add_argument("--x", action="append", default=[], metavar="COL",
                     help="a covariate column (repeat for several); the data become (X, y)")
    fit.add_argument("--intercept", action="store_true", help="a column of ones in front of X")
    fit.add_argument("--group", metavar="COL", help="the group column (default: one group)")
    fit.add_argument("--method", default="newton", choices=["newton", "bfgs", "lbfgs"])
    fit.add_argument("--cov", default=None, choices=["observed", "opg", "robust", "cluster"],
                     help="covariance (default observed; cluster with --cluster)")
    fit.add_argument("--cluster", metavar="COL",
                     help="cluster labels: cluster-robust standard errors (--cov cluster)")
    fit.add_argument("--event", metavar="COL",
                     help="event indicator (1 observed, 0 right-censored): a censored model")
    fit.add_argument("--entry", metavar="COL", help="entry times (left truncation), with --event")
    fit.add_argument("--level", type=float, default=0.95, help="Wald interval level (0.95)")
    fit.add_argument("--chunk-groups", type=int, default=_groups.DEFAULT_CHUNK_GROUPS,
                     metavar="N", help="groups fitted and saved per chunk (%(default)s)")
    fit.add_argument("--resume", action="store_true",
                     help="skip the chunks an interrupted run of the same command finished")
    fit.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    cache = fit.add_mutually_exclusive_group()
    cache.add_argument("--cache", default=None, metavar="DIR",
                       help="where compiled fits are kept (default $JAXMLE_CACHE_DIR or "
                       "~/.cache/jaxmle): later runs on tables of similar shape skip compiling")
    cache.add_argument("--no-cache", action="store_true",
                       help="compile every fit afresh and keep nothing on disk")
    fit.add_argument("-o", "--output", required=True, type=pathlib.Path, metavar="OUT",
                     help="output table, .csv or .parquet")
    fit.set_defaults(run=_fit)

    listing = commands.add_parser(
        "models", help="list the ready models", description="Lists the ready models: "
        "parameters, constraints and the columns they take.",
        epilog="example:\n  jaxmle models", formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.set_defaults(run=_models)
    return parser


# ----- jaxmle models ------------------------------------------------------------------
def _constraints_text(constraints) -> str:
    if constraints is None:
        return "none"
    if isinstance(constraints, dict):
        return ", ".join(f"{name} {c.name}" for name, c in constraints.items())
    return f"all {constraints.name}"


def _data_text(name: str) -> str:
    if name.endswith("_regression"):
        return "--x COL [--x COL ...] [--intercept] --value Y"
    if name in CENSORABLE:
        return "--value COL [--event COL [--entry COL]] (censored durations)"
    return "--value SUCCESSES --value TRIALS" if name == "binomial" else "--value COL"


def _models(args) -> int:
    listed = {**READY, "categorical(3)": models.categorical(3),
              "gaussian_mixture(2)": models.gaussian_mixture(2)}
    width = max(map(len, listed)) + 2
    for name, model in listed.items():
        print(f"{name:<{width}}{model.parameters}")
        print(f"{'':<{width}}constraints: {_constraints_text(model.constraints)}; "
              f"data: {_data_text(name)}")
    print(f"\ncategorical(K) and gaussian_mixture(K) take any K >= 2: --model 'categorical(4)'.")
    print("A model of your own: --model FILE.py:FUNCTION (see 'jaxmle fit --help').")
    return EXIT_OK


# ----- jaxmle fit ---------------------------------------------------------------------
def _format(path: pathlib.Path, what: str) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CliError(f"{what} {path}: unknown format {path.suffix!r}; use .csv or .parquet")
    if kind == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise CliError(f"{what} {path}: Parquet needs pyarrow: pip install 'jaxmle[parquet]'")
    return kind


def _ready_model(spec: str):
    match = re.fullmatch(r"(\w+)(?:\((\d+)\))?", spec.strip())
    name, k = (match.group(1), match.group(2)) if match else (spec, None)
    if name in FACTORIES and k is not None:
        return FACTORIES[name](int(k))
    if name in FACTORIES:
        raise CliError(f"model {name} needs its K: --model '{name}(3)'")
    if name in READY and k is None:
        return READY[name]
    raise CliError(f"unknown model {spec!r}; ready models: {', '.join(READY)}, "
                   f"{', '.join(f'{f}(K)' for f in FACTORIES)}; or FILE.py:FUNCTION")


def _file_model(spec: str):
    """``(log_density, init, constraints)`` from ``FILE.py:FUNCTION``."""
    file, _, name = spec.rpartition(":")
    path = pathlib.Path(file)
    if not name.isidentifier():
        raise CliError(f"--model {spec}: give the function as FILE.py:FUNCTION")
    if not path.is_file():
        raise CliError(f"model file {path}: no such file")
    module_name = f"_jaxmle_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as error:
        raise CliError(f"model file {path}, line {error.lineno}: syntax error: {error.msg}") from error
    except Exception as error:
        raise CliError(f"model file {path} failed to run: {type(error).__name__}: {error}") from error
    found = vars(module).get(name)
    if isinstance(found, models.ReadyModel):
        return found, None, None
    if not callable(found):
        functions = [key for key, value in vars(module).items()
                     if callable(value) and not key.startswith("_") and
                     getattr(value, "__module__", None) == module_name]
        raise CliError(f"model file {path} defines no function {name!r} "
                       f"(functions defined there: {', '.join(functions) or 'none'})")
    if vars(module).get("init") is None:
        raise CliError(f"model file {path} defines no init: add starting values, e.g. "
                       "init = {'mu': 0.0, 'sigma': 1.0}, or a function init(data)")
    return found, vars(module)["init"], vars(module).get("constraints")


def _read_table(path: pathlib.Path, columns: list[str]):
    pd = _frames.pandas()
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    kind = _format(path, "input")
    try:
        if kind == "csv":
            header = list(pd.read_csv(path, nrows=0).columns)
        else:
            import pyarrow.parquet
            header = pyarrow.parquet.read_schema(path).names
    except pd.errors.EmptyDataError as error:
        raise CliError(f"{path} is empty") from error
    missing = [column for column in columns if column not in header]
    if missing:
        raise CliError(f"{path} has no column {missing[0]!r} (its columns: {', '.join(header)})")
    # round_trip: every number parsed to the float64 it was written from (pandas 2's default
    # parser may land one ulp away, so a table would not equal the arrays it came from).
    frame = (pd.read_csv(path, usecols=columns, float_precision="round_trip") if kind == "csv"
             else pd.read_parquet(path, columns=columns))
    if len(frame) == 0:
        raise CliError(f"{path} has no rows")
    return frame


def _numeric(frame, column: str) -> np.ndarray:
    """The column as floats; text that is not a number becomes NaN (an excluded row)."""
    pd = _frames.pandas()
    numbers = pd.to_numeric(frame[column], errors="coerce")
    unparsed = numbers.isna() & frame[column].notna()
    if numbers.notna().sum() == 0 and unparsed.any():
        example = frame[column][unparsed].iloc[0]
        raise CliError(f"column {column!r} is not numeric (e.g. {example!r})")
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _file_hash(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_atomically(path: pathlib.Path, write) -> None:
    """``write(temporary path)``, then the temporary file moved onto ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_table(frame, path: pathlib.Path, kind: str) -> None:
    if kind == "csv":
        _replace_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        _replace_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _save_chunk(frame, path: pathlib.Path) -> None:
    # npz keeps every float bit and needs no optional package; text columns as str arrays.
    columns = {name: np.asarray(frame[name].to_numpy(), dtype=str)
               if frame[name].dtype.kind not in "biuf" else frame[name].to_numpy()
               for name in frame.columns}

    def write(tmp):
        with open(tmp, "wb") as stream:
            np.savez(stream, **columns)
    _replace_atomically(path, write)


def _load_chunk(path: pathlib.Path):
    with np.load(path, allow_pickle=False) as saved:
        return _frames.pandas().DataFrame({name: saved[name] for name in saved.files})


def _model(spec: str):
    """``(log_density, init, constraints, hash of the model file or "")`` for ``--model``."""
    if spec.partition(":")[0].endswith(".py"):
        return (*_file_model(spec), _file_hash(pathlib.Path(spec.rpartition(":")[0])))
    return _ready_model(spec), None, None, ""


def _survival_and_clusters(args, model):
    """``(model, cov)`` after ``--event``/``--entry`` (a censored model) and ``--cluster``."""
    if args.entry and not args.event:
        raise CliError("--entry needs --event (the event indicator column)")
    if args.event:
        if not isinstance(model, models.ReadyModel):
            raise CliError("--event works with the ready models exponential, weibull, gamma, "
                           "lognormal and normal; a model file takes the columns itself "
                           "(--value COL --value EVENT)")
        if len(args.value) != 1:
            raise CliError("--event takes one --value column (the durations)")
        try:
            model = censored(model, truncated=bool(args.entry))
        except ValueError as error:
            raise CliError(f"--event: {error}") from error
    cov = args.cov or ("cluster" if args.cluster else "observed")
    if args.cluster and cov != "cluster":
        raise CliError(f"--cluster gives cluster-robust standard errors; it cannot be combined "
                       f"with --cov {cov}")
    if cov == "cluster" and not args.cluster:
        raise CliError("--cov cluster needs --cluster COL (the cluster labels)")
    return model, cov


def _rows(args) -> _groups.GroupedRows:
    """The input's rows, ordered by group; text that is not a number becomes NaN."""
    group = [args.group] if args.group else []
    value_columns = args.value + [c for c in (args.event, args.entry) if c]
    cluster = [args.cluster] if args.cluster else []
    frame = _read_table(args.data, list(dict.fromkeys(value_columns + args.x + group + cluster)))
    values = np.column_stack([_numeric(frame, column) for column in value_columns])
    x = np.column_stack([_numeric(frame, column) for column in args.x]) if args.x else None
    labels = frame[args.group].to_numpy() if args.group else np.zeros(len(frame), np.int64)
    clusters = frame[args.cluster].to_numpy() if args.cluster else None
    return _groups.GroupedRows.build(values, labels, x=x, intercept=args.intercept,
                                     clusters=clusters)


def _finished_chunks(args, store: pathlib.Path, manifest: dict) -> set[int]:
    """The chunks an interrupted run saved (``--resume``); without it, a clean slate."""
    manifest_path = store / "manifest.json"
    if args.resume and manifest_path.is_file():
        if json.loads(manifest_path.read_text()) != manifest:
            raise CliError(f"--resume: the chunks in {store} come from another input, model or "
                           "options; run without --resume to start over")
        return {int(p.stem.split("-")[1]) for p in store.glob("chunk-*.npz")}
    if store.exists():
        if not manifest_path.is_file():
            raise CliError(f"{store} exists and is not a jaxmle chunk directory; move it away")
        shutil.rmtree(store)
    return set()


def _fit(args) -> int:
    started = time.perf_counter()
    if not 0.0 < args.level < 1.0:
        raise CliError(f"--level must lie strictly between 0 and 1, got {args.level}")
    out_kind = _format(args.output, "output")
    if not args.output.parent.is_dir():
        raise CliError(f"output folder {args.output.parent} does not exist")
    log_density, init, constraints, model_hash = _model(args.model)
    log_density, cov = _survival_and_clusters(args, log_density)
    if not args.no_cache:  # a process of its own: JAX's global cache setting is ours
        enable_compilation_cache(args.cache)
    rows = _rows(args)
    chunks = rows.chunks(args.chunk_groups)

    options = {key: str(value) for key, value in vars(args).items()
               if key not in ("data", "output", "resume", "quiet", "cache", "no_cache", "run")}
    key = hashlib.sha256(json.dumps([_file_hash(args.data), model_hash, options, jaxmle.__version__],
                                    sort_keys=True).encode()).hexdigest()
    manifest = {"key": key, "chunks": len(chunks)}
    store = args.output.with_name(args.output.name + CHUNKS_SUFFIX)
    done = _finished_chunks(args, store, manifest)
    fitter = lambda blocks, block_size: fit_stream(
        log_density, init, blocks, block_size=block_size, method=args.method,
        constraints=constraints, cov=cov)
    bar = _progress.Progress(sum(c.members.size for i, c in enumerate(chunks) if i not in done),
                             enabled=not args.quiet, noun="groups")
    for number, chunk in enumerate(chunks):
        if number in done:
            continue
        part = _groups.fit_chunk(rows, chunk, fitter, bar)
        if not store.exists():  # made once a chunk is done: a model error leaves nothing
            store.mkdir()
            _replace_atomically(store / "manifest.json",
                                lambda tmp: tmp.write_text(json.dumps(manifest)))
        _save_chunk(part.to_dataframe(args.level).iloc[:, 1:], store / f"chunk-{number:06d}.npz")
    bar.close()

    result = _frames.pandas().concat(
        [_load_chunk(store / f"chunk-{n:06d}.npz") for n in range(len(chunks))], ignore_index=True)
    in_label_order = np.argsort(np.concatenate([c.members for c in chunks]))
    result = result.iloc[in_label_order].reset_index(drop=True)
    if args.group:
        result.insert(0, args.group, rows.labels)
    _write_table(result, args.output, out_kind)
    shutil.rmtree(store)
    if not args.quiet:
        print(_summary(result, len(done), len(chunks), time.perf_counter() - started))
        print(f"wrote {args.output}")
    return EXIT_OK if result["converged"].all() else EXIT_FAILED_GROUPS


def _summary(result, resumed: int, n_chunks: int, seconds: float) -> str:
    failed = collections.Counter(status for status in result["status"] if status != Status.CONVERGED.name)
    text = (f"{len(result):,} groups, {int(result['n_rows'].sum()):,} rows: "
            f"{int(result['converged'].sum()):,} converged, {sum(failed.values()):,} failed")
    if failed:
        text += " (" + ", ".join(f"{name} {count:,}" for name, count in failed.most_common()) + ")"
    excluded = int(result["n_excluded"].sum())
    text += f"; {excluded:,} rows excluded (a value missing, not a number or not finite)" if excluded else ""
    text += f"; {resumed} of {n_chunks} chunks from the interrupted run" if resumed else ""
    return text + f"; {seconds:,.1f} s"
