"""Shared by the benchmark scripts: the machine line and marked sections of result files.

``benchmarks/RESULTS.md`` holds one section per script, between ``<!-- NAME: begin -->``
and ``<!-- NAME: end -->``; ``python benchmarks/NAME.py --write-results`` replaces its own
section with the tables it just printed and the machine line, leaving the others alone.
"""

import contextlib
import io
import os
import pathlib
import platform
import sys
from importlib import metadata

RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"

import jax
import numpy as np


def machine(*packages: str) -> str:
    """``"x86_64, 2 cores, jax 0.10.2, numpy 2.4.6, ..."``: the machine and the versions of
    ``packages`` that are installed."""
    versions = f"jax {jax.__version__}, numpy {np.__version__}"
    for name in packages:
        try:
            versions += f", {name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {versions}"


def write_section(path: pathlib.Path, name: str, text: str) -> None:
    """Replaces the section between ``<!-- name: begin -->`` and ``<!-- name: end -->`` of
    the file at ``path`` with ``text`` (or adds the section at the end of the file)."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    old = path.read_text()
    section = f"{begin}\n{text}\n{end}"
    if begin in old:
        new = old[:old.index(begin)] + section + old[old.index(end) + len(end):]
    else:
        new = f"{old.rstrip()}\n\n{section}\n"
    path.write_text(new)


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def section_text(title: str, printed: str, machine_line: str, *, fenced: bool = False) -> str:
    """A section: ``## title``, the machine line, then what the script printed (its ``## ``
    headings demoted to ``### ``; fixed-width tables ``fenced`` as a code block)."""
    body = printed.strip("\n")
    if fenced:
        body = f"```text\n{body}\n```"
    else:
        body = "\n".join("#" + line if line.startswith("## ") else line
                          for line in body.splitlines())
    return f"## {title}\n\n{machine_line}\n\n{body}"


@contextlib.contextmanager
def results_section(name: str, title: str, *packages: str, write: bool, fenced: bool = False,
                    path: pathlib.Path = RESULTS):
    """Prints as usual; with ``write``, the printed tables then replace section ``name`` of
    ``path`` (with ``title`` and the machine line, ``machine(*packages)``).

    A run that raises writes nothing, so a failed run never replaces good numbers.
    """
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    if write:
        write_section(path, name, section_text(title, tee.copy.getvalue(), machine(*packages),
                                               fenced=fenced))
        print(f"wrote section {name} of {path}")
