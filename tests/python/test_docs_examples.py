"""Every ```python block of README.md and docs/*.md runs as written, so a documented example cannot rot.

Each block runs on its own (a fresh namespace, the working directory a temporary one): a block must be
self-contained. A block that imports torch, jax, dask or transformers skips, naming the package, where it
is not installed; .ci/run installs all four, so in CI every block runs.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
OPTIONAL = ("torch", "jax", "dask", "transformers")


def blocks() -> list:
    found = []
    for path in [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 2  # the first line of code
            name = f"{path.relative_to(ROOT).as_posix()}:{line}"
            found.append(pytest.param(name, m.group(1), id=name))
    return found


BLOCKS = blocks()


def test_the_docs_have_python_examples():
    files = {p.values[0].split(":")[0] for p in BLOCKS}
    assert "README.md" in files and "docs/api.md" in files, files


@pytest.mark.parametrize("name, code", BLOCKS)
def test_example_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {e.name}, which is not installed (.ci/run installs it)")
        raise
