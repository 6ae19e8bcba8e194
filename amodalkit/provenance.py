"""Where a result or a model comes from: the commit of the code, whether it had uncommitted changes, the package
version, and which source files a notebook runs (the import closure of its code cells).

A chapter's cache key (:mod:`amodalkit.book`) hashes the notebook, its parameters and the files of its import
closure, so an edit to one method's module leaves the other methods' chapters fresh. Files are identified by their
git blob hash (``git hash-object``), so a recorded set of inputs can be compared with any commit's tree.

Example:
    >>> sorted(import_closure(["from amodalkit.ops import warp"]))[:2]
    ['amodalkit/__init__.py', 'amodalkit/ops.py']
"""
from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "amodalkit"
# what git looks at for "uncommitted changes to the code": the package and its pinned dependencies (results and
# executed notebooks change during a run and say nothing about the code that ran)
CODE_PATHS = ("amodalkit", "pyproject.toml")


def blob_hash(path: Path | str) -> str:
    """The git blob hash of a file (equal to ``git hash-object PATH``): comparable with a commit's tree entries."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _git(*args: str) -> str | None:
    """stdout of a git command in the repository root, or None when there is no git or no repository."""
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_commit() -> str | None:
    """The commit checked out (full hash), or None outside a git repository."""
    out = _git("rev-parse", "HEAD")
    return out.strip() if out else None


def uncommitted(paths: Iterable[str] = CODE_PATHS) -> list[str] | None:
    """Tracked files under ``paths`` (relative to the repository root) whose content differs from the commit checked
    out, or None outside a git repository."""
    out = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    if out is None:
        return None
    return sorted(line[3:].split(" -> ")[-1] for line in out.splitlines() if line.strip())


def describe() -> dict:
    """Provenance of work done now: ``{commit, dirty, version, created}`` (``dirty``: the package code had uncommitted
    changes; ``commit`` and ``dirty`` are None outside a git repository)."""
    from . import __version__

    changes = uncommitted()
    return dict(commit=git_commit(), dirty=None if changes is None else bool(changes), version=__version__,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# ------------------------------------------------------------------------------------ import closure


def module_path(module: str) -> Path | None:
    """The source file of an ``amodalkit`` module (a package's ``__init__.py``), None for anything else."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> dict[str, set[str]]:
    """``{module: names imported from it}`` of every import statement in ``tree`` (function-level ones too: a lazy
    import runs when the function does). ``from pkg import sub`` lists ``pkg.sub`` when it is a module."""
    found: dict[str, set[str]] = {}
    package = module if is_package else module.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if module_path(sub) is not None:
                    found.setdefault(sub, set())
                else:
                    found.setdefault(source, set()).add(alias.name)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (imports for annotations only)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


_MAGIC = re.compile(r"^\s*[%!]")


def parse_cell(source: str) -> ast.AST | None:
    """A notebook code cell as Python (IPython magics and shell lines blanked), None when it does not parse."""
    try:
        return ast.parse("\n".join("" if _MAGIC.match(line) else line for line in source.splitlines()))
    except SyntaxError:
        return None


def import_closure(sources: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, set[str]]:
    """The ``amodalkit`` source files that code cells ``sources`` run, following imports through the package.

    Returns ``{path relative to the repository root: names imported from it}`` for every file of the closure. Modules
    named in ``exclude`` (e.g. the book's rendering code) are not entered: they appear only when the cells import
    from them directly, with the names imported (so a caller can hash those names' values instead of the file).
    """
    exclude = set(exclude)
    todo: list[tuple[str, set[str], bool]] = []  # (module, names, imported by a cell)
    for source in sources:
        tree = parse_cell(source)
        if tree is not None:
            todo += [(m, names, True) for m, names in _imported_modules(tree, "__main__", False).items()]
    files: dict[str, set[str]] = {}
    seen: set[str] = set()
    while todo:
        module, names, direct = todo.pop()
        path = module_path(module)
        if path is None:
            continue
        for parent in _parents(module):  # importing a.b.c runs a/__init__ and a/b/__init__
            if parent not in seen and parent not in exclude:
                todo.append((parent, set(), False))
        rel = path.relative_to(ROOT).as_posix()
        if module in exclude:
            if direct:
                files.setdefault(rel, set()).update(names)
            continue
        files.setdefault(rel, set()).update(names)
        if module in seen:
            continue
        seen.add(module)
        todo += [(m, set(n), False) for m, n in _file_imports(str(path), path.stat().st_mtime_ns, module).items()]
    return files


@lru_cache(maxsize=None)
def _file_imports(path: str, mtime_ns: int, module: str) -> dict[str, frozenset[str]]:
    """:func:`_imported_modules` of a package file, parsed once per version of the file (``mtime_ns`` keys it)."""
    found = _imported_modules(ast.parse(Path(path).read_text()), module, path.endswith("__init__.py"))
    return {m: frozenset(n) for m, n in found.items()}


def commits_touching(path: Path | str, limit: int = 50) -> list[str]:
    """The newest ``limit`` commits that changed ``path`` (newest first; [] outside a git repository)."""
    rel = Path(path).resolve().relative_to(ROOT).as_posix()
    out = _git("log", f"-n{limit}", "--format=%H", "--", rel)
    return out.split() if out else []


def blobs_at(commit: str, paths: Iterable[str]) -> dict[str, str]:
    """``{path: git blob hash}`` of ``paths`` in ``commit``'s tree (absent paths are left out)."""
    paths = list(paths)
    out = _git("ls-tree", "-r", commit, "--", *paths) if paths else ""
    blobs = {}
    for line in (out or "").splitlines():
        meta, _, path = line.partition("\t")
        blobs[path] = meta.split()[2]
    return blobs


def show(commit: str, path: str) -> str | None:
    """The text of ``path`` in ``commit`` (None when absent)."""
    return _git("show", f"{commit}:{path}")
