"""The engine examples run on the offline model and print what they published."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("02_multi_output.py", "analyst -> Analysis"),
        ("03_fan_out.py", "published 5 ideas and"),
        ("04_tools.py", "search_docs("),
    ],
)
def test_example_runs(name: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr()
    assert expected in out.out
    assert "built-in 'offline' model" in out.err
