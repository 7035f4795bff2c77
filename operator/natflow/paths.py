"""The files under the paths a user gives: a file as itself, a directory recursively, sorted."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path


def walk_files(paths: list[str], on_skip: Callable[[str, str], None] | None = None) -> Iterator[tuple[str, bool]]:
    """(path, named explicitly) for every regular file; hidden files in directories are passed over.

    What a directory holds that is not a regular file (a FIFO, a socket, a device, a broken link, a
    link loop) is never yielded (opening a FIFO blocks): `on_skip(path, why)` is told of it.
    Raises FileNotFoundError naming a path that does not exist or is no regular file.
    """
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for current, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    path = os.path.join(current, name)
                    problem = not_regular(path)
                    if problem is None:
                        yield path, False
                    elif on_skip is not None:
                        on_skip(path, problem)
        elif root.is_file():
            yield str(root), True
        else:
            raise FileNotFoundError(f"{given}: {not_regular(given) or 'no such file or directory'}")


def os_reason(error: OSError) -> str:
    """What an OSError from opening or reading a file says, in words (no errno, no repeated path)."""
    if error.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    reason = error.strerror or str(error)
    return reason[:1].lower() + reason[1:]


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def not_regular(path: str) -> str | None:
    """Why `path` is not a regular file that can be opened (a FIFO, a socket, a device, a directory, a
    broken link, a link loop), or None when it is one. Checked before opening: opening a FIFO blocks."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ENOENT and os.path.islink(path):
            return "a broken symbolic link"
        return os_reason(error)
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    return f"{_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a regular file"
