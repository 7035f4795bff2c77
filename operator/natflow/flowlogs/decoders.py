"""Decoder processes: untrusted objects are decoded where a crash cannot take the run down.

A columnar library parses a Parquet object's bytes in C++; on damaged or hostile bytes it may
abort, crash or allocate without bound instead of raising. Each such object is decoded and reduced
in a child process (a new interpreter, `python -m natflow.flowlogs.decoders`: it inherits neither
the parent's threads nor its memory), which sends back only the object's small reduction and its
warnings. A child's address space is capped (`RLIMIT_AS`) and each object has a time limit
that grows with its size. A child that dies (a signal, an abort, the memory cap) or overruns
its time is replaced, and the object it held becomes a `DecoderFailed` naming what happened; the
run goes on.

A child serves one object at a time and stays for the next: the pool holds as many children as
there are callers at once (reader threads), so the start-up (~0.2 s, mostly importing pyarrow) is
paid once per reader thread, not per object. Between objects it keeps the memory it freed for the
next one (returning it to the system and faulting it in again cost a sixth of an object's time);
the callers stop idle decoders at the end of each reading pass (`stop_idle`).
"""

from __future__ import annotations

import atexit
import fcntl
import importlib
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

# A child's address space: pyarrow maps ~1.4 GB of it (libraries, allocator arenas, thread stacks)
# before it decodes anything; a flow log's row group takes a few tens of MB more.
ADDRESS_SPACE_BYTES = 3 << 30
# An object's time limit: pyarrow decodes ~5M records (~60 MB of GZIP Parquet) a second.
TIME_LIMIT_SECONDS = 60.0
TIME_LIMIT_SECONDS_PER_MB = 1.0


class DecoderFailed(Exception):
    """The decoder process did not give an object's result; the message says what happened."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def time_limit(size: int) -> float:
    """The time an object of `size` bytes may take to decode."""
    return TIME_LIMIT_SECONDS + TIME_LIMIT_SECONDS_PER_MB * size / (1 << 20)


def resolve(function: str) -> Callable[..., Any]:
    """The function named "module:name" (imported here)."""
    module, name = function.split(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return found


def _serve(connection: Connection) -> None:
    """A child's loop: (function, args) in, ("ok", result) or ("error", text) out."""
    while True:
        try:
            function, args = connection.recv()
        except EOFError:  # the parent is gone
            return
        try:
            reply: tuple[str, Any] = ("ok", resolve(function)(*args))
        except BaseException as error:  # everything goes back as text: the parent decides
            reply = ("error", f"{type(error).__name__}: {error}")
        try:
            connection.send(reply)
        except MemoryError as error:
            connection.send(("error", f"{type(error).__name__}: {error} (sending the result)"))


# The end of a dead decoder's stderr shown in its warning (an abort's reason, e.g. an uncaught C++ exception).
STDERR_SHOWN_BYTES = 300


class _Child:
    def __init__(self, address_space: int, preload: str = "") -> None:
        # Its stderr goes to an unlinked file, not to the run's: what it said before dying is shown
        # on the object's warning line instead.
        self.stderr, path = tempfile.mkstemp(prefix="natflow-decoder-")
        os.unlink(path)
        fcntl.fcntl(self.stderr, fcntl.F_SETFL, os.O_APPEND)
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(address_space), preload],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stderr=self.stderr,
                # pyarrow's default allocator (mimalloc) keeps freed pages and reserves address space
                # ahead; the C library's gives both back, so RSS and the address space cap mean what they say.
                env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"},
            )
            self.connection = Connection(ours.detach())

    def begin(self) -> None:
        """Forget what the child said before this object."""
        os.ftruncate(self.stderr, 0)

    def stop(self) -> None:
        self.connection.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.stderr)

    def death(self) -> str:
        """What became of a child whose connection closed."""
        try:
            code: int | None = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        size = os.fstat(self.stderr).st_size
        said = " ".join(os.pread(self.stderr, STDERR_SHOWN_BYTES, max(size - STDERR_SHOWN_BYTES, 0)).decode(
            "utf-8", "replace").split())  # fmt: skip
        self.stop()
        if code is None:
            what = "decoder process stopped answering"
        elif code < 0:
            name = signal.Signals(-code).name
            what = f"decoder process killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            what = f"decoder process exited with status {code}"
        return f"{what}: {said}" if said else what


class DecoderPool:
    """Child processes for untrusted objects, one per concurrent caller, kept between calls."""

    def __init__(self, address_space: int = ADDRESS_SPACE_BYTES, keep: int = 4) -> None:
        self.address_space = address_space
        self.keep = keep
        self.idle: list[_Child] = []
        self.lock = threading.Lock()

    def call(self, function: str, args: tuple[Any, ...], timeout: float) -> Any:
        """function(*args) in a child (`function`: "module:name", imported there only, so that the
        parent never loads the decoding library); DecoderFailed when the child dies, overruns or
        the call raises."""
        child = self._take()
        child.begin()
        try:
            child.connection.send((function, args))
            if not child.connection.poll(timeout):
                child.stop()
                raise DecoderFailed(f"decoding took more than {timeout:g} s; decoder process stopped", timed_out=True)
            status, value = child.connection.recv()
        except (EOFError, OSError) as error:  # the child died (a broken pipe, a closed one)
            raise DecoderFailed(child.death()) from error
        self._give_back(child)
        if status != "ok":
            raise DecoderFailed(f"decoder failed ({value})")
        return value

    def warm(self, count: int, preload: str) -> None:
        """Start decoders ahead, up to `count` idle, each importing `preload` (a module) while the
        caller does other work: a decoder's start-up is mostly importing the decoding library."""
        with self.lock:
            missing = min(count, self.keep) - len(self.idle)
            self.idle.extend(_Child(self.address_space, preload) for _ in range(max(missing, 0)))

    def _take(self) -> _Child:
        with self.lock:
            while self.idle:
                child = self.idle.pop()
                if child.process.poll() is None:
                    return child
                child.stop()
        return _Child(self.address_space)

    def _give_back(self, child: _Child) -> None:
        with self.lock:
            if len(self.idle) < self.keep:
                self.idle.append(child)
                return
        child.stop()

    def close(self) -> None:
        with self.lock:
            children, self.idle = self.idle, []
        for child in children:
            child.stop()


_pool: DecoderPool | None = None
_pool_lock = threading.Lock()


def stop_idle() -> None:
    """Stop the idle decoders (their memory is the process's to use again; new ones start on demand)."""
    with _pool_lock:
        if _pool is not None:
            _pool.close()


def pool() -> DecoderPool:
    """The process's decoder pool, made at first use and closed at exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DecoderPool()
            atexit.register(_pool.close)
        return _pool


if __name__ == "__main__":  # a decoder process: the connection's descriptor, the address space cap, a module
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
    if sys.argv[3]:
        importlib.import_module(sys.argv[3])
    _serve(Connection(int(sys.argv[1])))
