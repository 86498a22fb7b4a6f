"""Examples run in a small mode, so they can never rot."""

import importlib.util
import pathlib


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_small(capsys):
    fits = _load("quickstart").main(datasets=64, obs=200)
    out = capsys.readouterr().out
    assert "converged           100.00%" in out
    assert fits.converged.all()
    assert len(fits) == 64
