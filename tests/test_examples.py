"""Examples run in a small mode, so they can never rot."""

from conftest import load_example


def test_quickstart_small(capsys):
    fits = load_example("quickstart").main(datasets=64, obs=200)
    out = capsys.readouterr().out
    assert "converged           100.00%" in out
    assert fits.converged.all()
    assert len(fits) == 64
