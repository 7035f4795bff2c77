"""The fast readers of S3 text and Parquet flow logs: the reference readers' result, in bulk.

`readers.py` reads record by record and is the reference. The fast readers must give exactly the
same `Reduction` (rows, every counter, formats, first/last time) and the same warnings. They never
guess: whatever they do not reproduce exactly goes to the reference code, so correctness does not
depend on them.

* Text: `textscan` (ISA-L gunzip, a compiled line scanner; odd lines go to `readers.add_parts`).
* Parquet: `columnar` (our decoder or polars decodes the used columns, the compiled scanner
  reduces the rows on NAT ENIs; odd rows go to `readers.add_rows`).
* A whole file goes to the reference reader when it is damaged (truncated gzip, unreadable
  Parquet), has an unusable header, a first line with CR, or Parquet columns of types other
  than strings and integers: the reference then produces the same records and warnings.
* CloudWatch Logs exports always take the reference path.

Memory does not grow with the size of a file: text is decompressed and reduced a piece at a time,
Parquet is read in row slices, and only the reduced rows (what the result holds anyway) are kept.
Many files are read by several threads (`read_all_parallel`): gunzip, the scanner and polars work
without the GIL, so threads use the cores without a second copy of the process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import columnar, textscan
from natflow.flowlogs.fields import FormatError
from natflow.flowlogs.readers import DAMAGE, READERS, FormatChoices, NeedsReference
from natflow.flowlogs.reduce import NatTopology, Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile


class BulkRead(Protocol):
    """What a fast reader reduced of one file, apart from the records it left to the reference code."""

    def finish(self, into: Reduction) -> None:
        """Fold the counters, times and rows into `into`."""


_FastReader = Callable[[FlowLogFile, FormatChoices, Reduction, Diagnostics], BulkRead]
_FAST: dict[FileKind, _FastReader] = {FileKind.TEXT: textscan.read_text, FileKind.PARQUET: columnar.read_parquet}
# What a fast reader raises when the file must be read by the reference reader instead.
_TO_REFERENCE = (NeedsReference, FormatError, textscan.INFLATE_ERROR, *DAMAGE)


def read_file_vectorised(
    file: FlowLogFile, choices: FormatChoices, reduction: Reduction, diagnostics: Diagnostics
) -> None:
    """Read one file into `reduction`, as `readers.READERS[file.kind]` would, faster."""
    part, bulk, notes = _read_file(file, choices, reduction.topology, reduction.window)
    _fold(reduction, part, bulk, notes, diagnostics)


def _read_file(
    file: FlowLogFile, choices: FormatChoices, topology: NatTopology, window: tuple[int, int] | None
) -> tuple[Reduction, BulkRead | None, Diagnostics]:
    """Read one file: what the reference code added, what the fast reader reduced, the warnings."""
    # Nothing is kept before the file has been read to its end: a damaged file is re-read by the
    # reference reader, which keeps what comes before the damage and warns.
    part, notes = Reduction(topology, window), Diagnostics()
    reader = _FAST.get(file.kind)
    if reader is not None:
        try:
            return part, reader(file, choices, part, notes), notes
        except _TO_REFERENCE:
            part, notes = Reduction(topology, window), Diagnostics()
    READERS[file.kind](file, choices, part, notes)
    return part, None, notes


def _fold(
    reduction: Reduction, part: Reduction, bulk: BulkRead | None, notes: Diagnostics, diagnostics: Diagnostics
) -> None:
    """Merge one file's reading into `reduction` and its warnings into `diagnostics`."""
    if not reduction.rows:  # `part` is not used afterwards: take its rows as they are
        reduction.rows, part.rows = part.rows, {}
    reduction.merge(part)
    if bulk is not None:
        bulk.finish(reduction)
    diagnostics.extend(notes)


def read_all_parallel(
    files: Iterable[FlowLogFile],
    choices: FormatChoices,
    topology: NatTopology,
    window: tuple[int, int] | None,
    diagnostics: Diagnostics,
    workers: int,
) -> Reduction:
    """Read every file, `workers` at a time; the result is what reading them in order gives
    (formats, malformed examples and warnings are merged in file order)."""
    files = list(files)
    reduction = Reduction(topology, window)
    if workers < 2 or len(files) < 2:
        for file in files:
            read_file_vectorised(file, choices, reduction, diagnostics)
        return reduction

    def read_apart(file: FlowLogFile) -> tuple[Reduction, BulkRead | None, Diagnostics]:
        return _read_file(file, choices, topology, window)

    threads = min(workers, len(files))
    with ThreadPoolExecutor(threads) as pool:
        # At most one file more than the threads read ahead: a file done early waits, with its reduced
        # rows, only for those before it, and memory does not grow with the number of files.
        ahead: deque[Future[tuple[Reduction, BulkRead | None, Diagnostics]]] = deque()
        for file in files:
            ahead.append(pool.submit(read_apart, file))
            if len(ahead) > threads:
                _fold(reduction, *ahead.popleft().result(), diagnostics)
        while ahead:
            _fold(reduction, *ahead.popleft().result(), diagnostics)
    return reduction
