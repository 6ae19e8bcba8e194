"""amodalkit: models, losses, metrics, data worlds and the runner of the amodalkit book."""
from __future__ import annotations

import os

__version__ = "0.1.0"


def progress(iterable=None, *, desc: str | None = None, total: int | None = None, disable: bool = False):
    """A tqdm progress bar for long loops in chapters and library code.

    Silent when the book runner executes the notebook (it shows its own bar over notebooks and
    the notebook's output would only collect bar redraws).
    """
    from tqdm.auto import tqdm

    disable = disable or bool(os.environ.get("AMODALKIT_MEASUREMENTS"))
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False)
