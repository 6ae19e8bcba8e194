"""Shared fixtures: the smoke run of every notebook and the smoke build of the book (once per session)."""
import os

import nbformat
import pytest


@pytest.fixture(scope="session", autouse=True)
def world_cache(tmp_path_factory):
    """Generated clips are cached in a folder of this test session, not in the user's cache."""
    previous = os.environ.get("AMODALKIT_CACHE")
    os.environ["AMODALKIT_CACHE"] = str(tmp_path_factory.mktemp("world-cache"))
    yield
    if previous is None:
        os.environ.pop("AMODALKIT_CACHE", None)
    else:
        os.environ["AMODALKIT_CACHE"] = previous


@pytest.fixture(scope="session")
def smoke_run():
    """Run every notebook under the smoke profile (forced: the test is that they execute)."""
    from amodalkit import book

    return book.run("smoke", force=True)


@pytest.fixture(scope="session")
def smoke_book(smoke_run):
    """Build the HTML book from the smoke run; returns the path of index.html."""
    from amodalkit import book

    return book.build("smoke")


@pytest.fixture
def scratch_book(tmp_path, monkeypatch):
    """A throwaway book with its own notebooks, results and build folders."""
    from amodalkit import book, profiles

    for name in ("NOTEBOOK_DIR", "BOOK_DIR", "RESULTS_DIR", "BUILD_DIR"):
        monkeypatch.setattr(book, name, tmp_path / name.lower())
    book.NOTEBOOK_DIR.mkdir()
    book.BOOK_DIR.mkdir()
    (book.BOOK_DIR / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/scratch\n")
    monkeypatch.setitem(profiles.NOTEBOOKS, "scratch", {"divisor": profiles.Param(int, 1, "what to divide by", -5, 5)})

    def write(body: str):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("divisor = 1")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell("x = 1\ny = 2"), nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, book.NOTEBOOK_DIR / "scratch.ipynb")

    return write
