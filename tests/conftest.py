"""Shared fixtures: the smoke run of every notebook and the smoke build of the book (once per session)."""
import os

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
