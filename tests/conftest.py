"""Shared fixtures: the smoke run of every notebook and the smoke build of the book (once per session)."""
import pytest


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
