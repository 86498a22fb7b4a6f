"""The jaxmle command line: fit a table of groups end to end, errors on one line, resume.

The CLI runs in-process through ``main([...])`` (sharing compiled shapes with
test_groups.py: 16 groups of 17..32 rows); real processes only for the installed script
and for the kill-and-resume test.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import jaxmle as jm
from conftest import ESTIMATE_RTOL
from jaxmle.tabular import _cli
from test_groups import GROUPS, long_table, padded

MODEL_FILE = """\
import jax.numpy as jnp
import jaxmle as jm

def normal(params, y):
    z = (y - params["mu"]) / params["sigma"]
    return -0.5 * z * z - jnp.log(params["sigma"]) - 0.5 * jnp.log(2.0 * jnp.pi)

init = {"mu": 0.0, "sigma": 1.0}
constraints = {"sigma": jm.positive}
"""


def write_table(path, seed=0, groups=GROUPS):
    values, labels = long_table(seed, groups)
    frame = pd.DataFrame({"store": labels, "sales": values, "other": "text"})
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return values, labels


def run(capsys, *argv):
    # In-process fits keep JAX's global configuration untouched: no persistent cache.
    argv = [str(arg) for arg in argv]
    code = _cli.main(argv + ["--no-cache"] if argv[0] == "fit" and "--cache" not in argv else argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_against_fit_batch(result, values, labels):
    X, mask = padded(values, labels)
    batch = jm.fit_batch(jm.models.normal, None, X, mask=mask)
    assert result["store"].tolist() == sorted(set(labels))
    for key in ("mu", "sigma"):
        np.testing.assert_array_equal(result[key], batch.params[key])
        np.testing.assert_array_equal(result[f"{key}_se"], batch.se[key])
    np.testing.assert_array_equal(result["loglik"], batch.loglik)
    assert (result["status"] == "CONVERGED").all() and result["converged"].all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_fit_a_table_equals_fit_batch(tmp_path, capsys, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    data, out = tmp_path / f"data{suffix}", tmp_path / f"out{suffix}"
    values, labels = write_table(data)
    code, stdout, stderr = run(capsys, "fit", data, "--model", "normal", "--value", "sales",
                               "--group", "store", "-o", out)
    assert code == _cli.EXIT_OK
    assert f"{GROUPS} groups, {values.size} rows: {GROUPS} converged, 0 failed" in stdout
    assert f"fitted {GROUPS} / {GROUPS} groups" in stderr and "fits/s" in stderr
    result = (pd.read_csv(out, float_precision="round_trip") if suffix == ".csv"
              else pd.read_parquet(out))
    check_against_fit_batch(result, values, labels)
    assert sorted(os.listdir(tmp_path)) == sorted([data.name, out.name])  # no leftovers


def test_custom_model_file_and_quiet(tmp_path, capsys):
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    values, labels = write_table(data, seed=2)
    (tmp_path / "mymodel.py").write_text(MODEL_FILE)
    code, stdout, stderr = run(capsys, "fit", data, "--model", tmp_path / "mymodel.py:normal",
                               "--value", "sales", "--group", "store", "--quiet", "-o", out)
    assert code == _cli.EXIT_OK and stdout == "" and stderr == ""
    result = pd.read_csv(out)
    for i, label in enumerate(result["store"]):
        rows = values[labels == label]
        np.testing.assert_allclose(result["mu"][i], rows.mean(), rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(result["sigma"][i], rows.std(), rtol=ESTIMATE_RTOL)


def test_bad_rows_are_counted_and_failed_groups_exit_1(tmp_path, capsys):
    values, labels = long_table()
    frame = pd.DataFrame({"store": labels, "sales": values.astype(object)})
    bad = np.flatnonzero(labels == "g04")[:3]
    frame.loc[bad[0], "sales"] = "n/a"       # not a number
    frame.loc[bad[1:], "sales"] = np.nan       # missing
    frame.loc[len(frame)] = ["lonely", 1.5]    # a group of one observation
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    frame.to_csv(data, index=False)
    code, stdout, _ = run(capsys, "fit", data, "--model", "normal", "--value", "sales",
                          "--group", "store", "--level", "0.9", "-o", out)
    assert code == _cli.EXIT_FAILED_GROUPS
    assert "1 failed (TOO_FEW_OBSERVATIONS 1)" in stdout and "3 rows excluded" in stdout
    result = pd.read_csv(out).set_index("store")
    assert len(result) == GROUPS + 1 and result.index.is_unique
    assert result.loc["lonely", "status"] == "TOO_FEW_OBSERVATIONS"
    assert result.loc["g04", "n_excluded"] == 3 and result["n_excluded"].sum() == 3
    kept = pd.to_numeric(frame["sales"], errors="coerce")[frame["store"] == "g04"].dropna()
    np.testing.assert_allclose(result.loc["g04", "mu"], kept.mean(), rtol=ESTIMATE_RTOL)
    assert result.loc["g04", "n_obs"] == result.loc["g04", "n_rows"] - 3


BROKEN_FILE = "import jax\ndef normal(params, y) return y\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, words", [
    ("missing file", "no such file"),
    ("missing column", "has no column 'price'"),
    ("unknown model", "unknown model 'normall'"),
    ("syntax error", "line 2: syntax error"),
    ("no such function", "defines no function 'density'"),
    ("no init", "defines no init"),
    ("empty file", "is empty"),
    ("header only", "has no rows"),
    ("non-numeric column", "column 'other' is not numeric"),
    ("unknown format", "unknown format '.xlsx'"),
    ("bad level", "--level must lie strictly between 0 and 1"),
    ("model error", "1-D array of per-observation terms"),
    ("no output folder", "does not exist"),
    ("no argument", "required: --model"),
])
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, case, words):
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    write_table(data)
    model, value, extra = "normal", "sales", []
    if case == "missing file":
        data = tmp_path / "nothing.csv"
    elif case == "missing column":
        value = "price"
    elif case == "unknown model":
        model = "normall"
    elif case == "syntax error":
        model = f"{write(tmp_path / 'm.py', BROKEN_FILE)}:normal"
    elif case == "no such function":
        model = f"{write(tmp_path / 'm.py', MODEL_FILE)}:density"
    elif case == "no init":
        model = f"{write(tmp_path / 'm.py', MODEL_FILE.replace('init =', 'start ='))}:normal"
    elif case == "empty file":
        write(data, "")
    elif case == "header only":
        write(data, "store,sales\n")
    elif case == "non-numeric column":
        value = "other"
    elif case == "unknown format":
        out = tmp_path / "out.xlsx"
    elif case == "bad level":
        extra = ["--level", "95"]
    elif case == "model error":  # per-observation terms of the wrong shape
        model = f"{write(tmp_path / 'm.py', MODEL_FILE.replace('return -0.5', 'return y[:, None] - 0.5'))}:normal"
    elif case == "no output folder":
        out = tmp_path / "nowhere" / "out.csv"
    argv = ["fit", data, "--model", model, "--value", value, "--group", "store", "-o", out, *extra]
    if case == "no argument":
        with pytest.raises(SystemExit) as exit_:
            _cli.main(["fit", str(data)])
        code, (_, err) = exit_.value.code, capsys.readouterr()
    else:
        code, _, err = run(capsys, *argv)
    assert code == _cli.EXIT_ERROR
    assert err.count("\n") == 1 and "error" in err and words in err, err
    assert "Traceback" not in err and not out.exists()
    assert not (tmp_path / f"out.csv{_cli.CHUNKS_SUFFIX}").exists()


def test_parquet_without_pyarrow_is_one_line(tmp_path, capsys, monkeypatch):
    real = _cli.importlib.util.find_spec
    monkeypatch.setattr(_cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    code, _, err = run(capsys, "fit", tmp_path / "d.csv", "--model", "normal", "--value", "y",
                       "-o", tmp_path / "out.parquet")
    assert code == _cli.EXIT_ERROR and "pip install 'jaxmle[parquet]'" in err


def test_help_has_examples_and_exit_codes(capsys):
    texts = {}
    for command in ("fit", "models"):
        with pytest.raises(SystemExit) as exit_:
            _cli.main([command, "--help"])
        texts[command] = capsys.readouterr().out
        assert exit_.value.code == 0 and "example" in texts[command]
    assert "exit codes: 0" in texts["fit"] and "init" in texts["fit"]
    assert "FILE.py:FUNCTION" in texts["fit"] and "--resume" in texts["fit"]


def test_models_lists_parameters_and_constraints(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name, model in _cli.READY.items():
        assert f"{name} " in out and model.parameters in out
    assert "sigma positive" in out and "probs simplex" in out and "categorical(K)" in out


def test_there_is_no_bench_command(capsys):
    # Benchmarks are scripts of a source checkout (python benchmarks/closed_forms.py).
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["bench"])
    assert exit_.value.code == 2 and "invalid choice: 'bench'" in capsys.readouterr().err


@pytest.mark.heavy
def test_installed_script_keeps_compiled_fits_unless_told_not_to(tmp_path):
    script = shutil.which("jaxmle")
    assert script is not None, "the jaxmle script is not installed: pip install -e ."
    done = subprocess.run([script, "models"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "normal" in done.stdout
    # Processes of their own: the command line may set JAX's global cache options.
    data = tmp_path / "data.csv"
    write_table(data, seed=5, groups=4)
    fit = [script, "fit", str(data), "--model", "normal", "--value", "sales", "--group", "store",
           "--quiet"]
    default, chosen = tmp_path / "default-cache", tmp_path / "chosen-cache"
    environment = dict(os.environ, JAXMLE_CACHE_DIR=str(default))

    def fit_to(name, *options):
        done = subprocess.run([*fit, *options, "-o", str(tmp_path / name)], capture_output=True,
                              text=True, timeout=300, env=environment)
        assert done.returncode == 0, done.stderr
        return pd.read_csv(tmp_path / name)

    filled = lambda folder: folder.is_dir() and any(folder.iterdir())
    fresh = fit_to("fresh.csv", "--no-cache")
    assert len(fresh) == 4 and not filled(default)
    # On by default, in $JAXMLE_CACHE_DIR; a second process reads what the first stored.
    pd.testing.assert_frame_equal(fit_to("first.csv"), fresh)
    assert filled(default)
    pd.testing.assert_frame_equal(fit_to("second.csv"), fresh)
    fit_to("chosen.csv", "--cache", str(chosen))
    assert filled(chosen)
    done = subprocess.run([*fit, "--no-cache", "--cache", str(chosen), "-o", str(tmp_path / "x.csv")],
                          capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == _cli.EXIT_ERROR and "not allowed with" in done.stderr


CHUNKED_GROUPS, CHUNK = 400, 8


def chunked_fit(data, out, *extra):
    return ["fit", str(data), "--model", "normal", "--value", "sales", "--group", "store",
            "--chunk-groups", str(CHUNK), "-o", str(out), *extra]


def test_interrupt_keeps_finished_chunks(tmp_path, capsys, monkeypatch):
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    write_table(data, seed=4, groups=3 * CHUNK)
    calls = []

    def interrupted(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return fit_chunk(*args)

    fit_chunk = _cli._groups.fit_chunk
    monkeypatch.setattr(_cli._groups, "fit_chunk", interrupted)
    code, _, err = run(capsys, *chunked_fit(data, out))
    assert code == _cli.EXIT_INTERRUPTED and "--resume" in err and not out.exists()
    store = tmp_path / f"out.csv{_cli.CHUNKS_SUFFIX}"
    assert [p.name for p in store.glob("chunk-*.npz")] == ["chunk-000000.npz"]
    monkeypatch.undo()
    code, stdout, _ = run(capsys, *chunked_fit(data, out, "--resume"))
    assert code == 0 and "1 of 3 chunks from the interrupted run" in stdout
    code, _, _ = run(capsys, *chunked_fit(data, tmp_path / "again.csv"))
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes() and not store.exists()


@pytest.mark.heavy
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    data, out = tmp_path / "data.csv", tmp_path / "out.csv"
    values, labels = write_table(data, seed=3, groups=CHUNKED_GROUPS)
    store = tmp_path / f"out.csv{_cli.CHUNKS_SUFFIX}"
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from jaxmle.tabular._cli import main; sys.exit(main())",
         *chunked_fit(data, out), "--no-cache"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(store.glob("chunk-*.npz")) and process.poll() is None:
        assert time.monotonic() < deadline, "no chunk written in 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(store.glob("chunk-*.npz")))
    assert 1 <= finished < CHUNKED_GROUPS // CHUNK and not out.exists()

    code, _, err = run(capsys, *chunked_fit(data, out, "--resume", "--level", "0.9"))
    assert code == _cli.EXIT_ERROR and "another input, model or options" in err
    code, stdout, _ = run(capsys, *chunked_fit(data, out, "--resume"))
    assert code == 0 and f"chunks from the interrupted run" in stdout and not store.exists()
    reference = tmp_path / "reference.csv"
    assert run(capsys, *chunked_fit(data, reference))[0] == 0
    assert out.read_bytes() == reference.read_bytes()
    result = pd.read_csv(out)
    assert len(result) == CHUNKED_GROUPS and result["store"].is_unique
    assert result["n_rows"].sum() == values.size
    np.testing.assert_allclose(
        result["mu"], [values[labels == label].mean() for label in result["store"]],
        rtol=ESTIMATE_RTOL)
