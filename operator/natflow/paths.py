"""The files under the paths a user gives: a file as itself, a directory recursively, sorted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk_files(paths: list[str]) -> Iterator[tuple[str, bool]]:
    """(path, named explicitly) for every file; hidden files in directories are passed over.

    Raises FileNotFoundError naming a path that does not exist.
    """
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for current, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    if not name.startswith("."):
                        yield os.path.join(current, name), False
        elif root.is_file():
            yield str(root), True
        else:
            raise FileNotFoundError(f"{given}: no such file or directory")
