"""benchmarks/_report.py: a script's --write-results replaces its own section and nothing else."""

import pytest

from conftest import load_example

FILE = """# Results

<!-- a: begin -->
## A
old a
<!-- a: end -->

<!-- b: begin -->
## B
kept b
<!-- b: end -->
"""


def test_a_section_is_replaced_by_what_the_script_printed(tmp_path, capsys):
    report = load_example("_report", folder="benchmarks")
    path = tmp_path / "RESULTS.md"
    path.write_text(FILE)
    with report.results_section("a", "A: `python a.py`", write=True, path=path):
        print("## table\n\n| x |\n|---|\n| 1 |")
    with report.results_section("c", "C", write=True, fenced=True, path=path):
        print("col  col\n1    2")
    text = path.read_text()
    assert "old a" not in text and "kept b" in text and text.count("<!-- a: begin -->") == 1
    a_section = text[text.index("<!-- a: begin -->"):text.index("<!-- a: end -->")]
    assert "## A: `python a.py`" in a_section and "### table" in a_section
    assert report.machine() in a_section and "| 1 |" in a_section
    assert text.rstrip().endswith("```text\ncol  col\n1    2\n```\n<!-- c: end -->")
    assert "| 1 |" in capsys.readouterr().out  # the terminal still sees the tables

    before = path.read_text()
    with pytest.raises(RuntimeError):
        with report.results_section("b", "B", write=True, path=path):
            print("half a table")
            raise RuntimeError("the run failed")
    assert path.read_text() == before  # a failed run keeps the recorded numbers
