"""Build a notebook (without outputs) from markdown and code cells written in a script.

The ``make_notebook_NN.py`` scripts keep a notebook's text and code reviewable as one
Python file. Cell ids are fixed (``<prefix>-NN``) so that regenerating gives the same
file::

    nb = NotebookCells("06_concept_atlas.ipynb", prefix="atlas")
    nb.md("# Title")
    nb.code("print(1)")
    nb.write()
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


class NotebookCells:
    """Cells in order, written to ``notebooks/<name>`` by :meth:`write`."""

    def __init__(self, name: str, prefix: str) -> None:
        self.target, self.prefix = ROOT / "notebooks" / name, prefix
        self.cells: list[tuple[str, str]] = []

    def md(self, text: str) -> None:
        self.cells.append(("markdown", text.strip("\n")))

    def code(self, text: str) -> None:
        self.cells.append(("code", text.strip("\n")))

    def build(self) -> nbformat.NotebookNode:
        nb = new_notebook()
        nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}}
        for i, (kind, source) in enumerate(self.cells):
            cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
            cell.id = f"{self.prefix}-{i:02d}"
            nb.cells.append(cell)
        nbformat.validate(nb)
        return nb

    def write(self) -> int:
        nbformat.write(self.build(), self.target)
        print(f"wrote {self.target.relative_to(ROOT)} ({len(self.cells)} cells)")
        return 0
