"""Shared by the benchmark scripts: the machine line and marked sections of result files."""

import os
import pathlib
import platform

import jax
import numpy as np


def machine(*packages: str) -> str:
    """``"x86_64, 2 cores, jax 0.10.2, numpy 2.4.6, ..."``: the machine and the versions of
    ``packages`` that are installed."""
    versions = f"jax {jax.__version__}, numpy {np.__version__}"
    for name in packages:
        try:
            versions += f", {name} {__import__(name).__version__}"
        except ImportError:
            pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {versions}"


def write_section(path: pathlib.Path, name: str, text: str) -> None:
    """Replaces the section between ``<!-- name: begin -->`` and ``<!-- name: end -->`` of
    the file at ``path`` with ``text`` (or adds the section before its first ``## ``
    heading)."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    old = path.read_text()
    section = f"{begin}\n{text}\n{end}"
    if begin in old:
        new = old[:old.index(begin)] + section + old[old.index(end) + len(end):]
    else:
        title, _, body = old.partition("\n## ")
        new = f"{title}\n{section}\n\n## {body}" if body else f"{old.rstrip()}\n\n{section}\n"
    path.write_text(new)
