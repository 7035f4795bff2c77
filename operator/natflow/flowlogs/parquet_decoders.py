"""What reads a Parquet object in a decoder process (`decoders`), and starting those processes ahead.

Apart from `vectorised` (which loads the text scanner and the readers), so that ``natflow
attribute`` starts the decoders before it imports the rest of natflow: a decoder's start-up is
mostly importing pyarrow, done while the parent imports and reads the other inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

from natflow.flowlogs import decoders
from natflow.flowlogs.sources import FileKind, FlowLogFile

# A Parquet object's readers in a decoder process: the fast one, then (if the decoder dies on the
# object) the reference one. By name: the parent never loads pyarrow.
PARQUET_READERS = ("natflow.flowlogs.columnar:read_object", "natflow.flowlogs.columnar:read_reference")


def warm_decoders(files: Iterable[FlowLogFile], workers: int) -> None:
    """Start the decoder processes the Parquet objects among `files` will need, so that they load
    their library while the caller does other work."""
    parquet = sum(1 for file in files if file.kind is FileKind.PARQUET)
    if parquet:
        decoders.pool().warm(min(parquet, workers), PARQUET_READERS[0].split(":")[0])
