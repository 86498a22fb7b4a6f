"""Optional plotting for the examples: matplotlib if installed (the ``plots`` extra), else
nothing, so that every example still prints its numbers without it."""

from __future__ import annotations

import pathlib


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plots]'): plots skipped")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, directory, name: str) -> pathlib.Path:
    """Writes ``figure`` as ``directory/name`` (PNG), closes it and returns the path."""
    path = pathlib.Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    figure.clear()
    import matplotlib.pyplot as plt

    plt.close(figure)
    print(f"wrote {path}")
    return path
