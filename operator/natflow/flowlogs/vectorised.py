"""The fast readers of S3 text and Parquet flow logs: the reference readers' result, in bulk.

`readers.py` reads record by record and is the reference. The fast readers must give exactly the
same `Reduction` (rows, every counter, formats, first/last time) and the same warnings. They never
guess: whatever they do not reproduce exactly goes to the reference code, so correctness does not
depend on them.

* Text: `textscan` (ISA-L gunzip, a compiled line scanner; odd lines go to `readers.add_parts`).
* Parquet: `columnar` (pyarrow decodes the used columns, the compiled scanner reduces the rows on
  NAT ENIs; odd rows go to `readers.add_rows`), in a decoder process (`decoders`): pyarrow parses
  the object's bytes there, so that an abort or a crash on damaged bytes loses that object, said
  in a `DamagedFlowLog` warning, and never the run. When the decoder dies on an object, the
  reference reader reads it again in a fresh one and keeps the row groups before the damage.
* A whole text file goes to the reference reader when it is damaged (truncated gzip), has an
  unusable header or a first line with CR; a Parquet file when its columns have types other than
  strings and integers: the reference then produces the same records and warnings.
* CloudWatch Logs exports always take the reference path.

Memory does not grow with the size of a file: text is decompressed and reduced a piece at a time,
Parquet is read a batch of rows at a time, and only the reduced rows (what the result holds anyway)
are kept. Many files are read by several threads (`read_all_parallel`): gunzip and the scanner work
without the GIL, and each thread reading Parquet waits on its own decoder process.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from natflow.diagnostics import Diagnostics
from natflow.flowlogs import decoders, textscan
from natflow.flowlogs.fields import FormatError
from natflow.flowlogs.parquet_decoders import PARQUET_READERS
from natflow.flowlogs.readers import DAMAGE, READERS, FormatChoices, NeedsReference
from natflow.flowlogs.reduce import NatTopology, ObjectReading, Reduction
from natflow.flowlogs.sources import FileKind, FlowLogFile
from natflow.net import CidrSet


class BulkRead(Protocol):
    """What a fast reader reduced of one file, apart from the records it left to the reference code."""

    def finish(self, into: Reduction) -> None:
        """Fold the counters, times and rows into `into`."""


_FastReader = Callable[[FlowLogFile, FormatChoices, Reduction, Diagnostics], BulkRead]
_FAST: dict[FileKind, _FastReader] = {FileKind.TEXT: textscan.read_text}
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
    if file.kind is FileKind.PARQUET:
        return _read_parquet(file, choices, topology, window)
    part, notes = Reduction(topology, window), Diagnostics()
    reader = _FAST.get(file.kind)
    if reader is not None:
        try:
            return part, reader(file, choices, part, notes), notes
        except _TO_REFERENCE:
            part, notes = Reduction(topology, window), Diagnostics()
    READERS[file.kind](file, choices, part, notes)
    return part, None, notes


def _read_parquet(
    file: FlowLogFile, choices: FormatChoices, topology: NatTopology, window: tuple[int, int] | None
) -> tuple[Reduction, BulkRead | None, Diagnostics]:
    """A Parquet object in a decoder process: the fast way, and when the decoder dies on it the
    reference reader in a fresh one; when that dies too (or time runs out), none of it counts."""
    try:
        limit = decoders.time_limit(os.stat(file.path).st_size)
    except OSError:
        limit = decoders.time_limit(0)  # the decoder says what is wrong with the file
    portable = _portable(topology)
    failures: list[str] = []
    for read in PARQUET_READERS:
        try:
            reading: ObjectReading = decoders.pool().call(read, (file, choices, portable, window), limit)
        except decoders.DecoderFailed as failure:
            failures.append(str(failure))
            if failure.timed_out:
                break
            continue
        part, notes = Reduction(topology, window), reading.notes()
        if failures:
            if not reading.stats.damaged_files:
                part.stats.damaged_files += 1
            notes.warn("DamagedFlowLog", f"{file.path}: {failures[0]}; read again by the reference reader",
                       file=file.path)  # fmt: skip
        return part, reading, notes
    part, notes = Reduction(topology, window), Diagnostics()
    part.stats.damaged_files += 1
    notes.warn("DamagedFlowLog", f"{file.path}: {'; then '.join(failures)}; none of its records are counted",
               file=file.path)  # fmt: skip
    return part, None, notes


_portable_topologies: dict[int, tuple[NatTopology, NatTopology]] = {}  # by id(): NatTopology holds dicts


def _portable(topology: NatTopology) -> NatTopology:
    """The topology as plain dicts and a fresh CidrSet (without its memo of addresses looked up),
    to be sent to the decoder with each object."""
    known = _portable_topologies.get(id(topology))
    if known is not None and known[0] is topology:
        return known[1]
    portable = NatTopology(
        dict(topology.natgw_by_eni),
        dict(topology.eni_by_nat_ip),
        CidrSet(topology.inside.cidrs),
        topology.regional,
        dict(topology.regional_nat_ips),
    )
    if len(_portable_topologies) >= 8:
        _portable_topologies.clear()
    _portable_topologies[id(topology)] = (topology, portable)
    return portable


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
    try:
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
    finally:
        decoders.stop_idle()  # a pass's decoders do not hold memory through what follows it
