from collections.abc import Callable

from typing_extensions import Buffer

def read_footer(
    data: Buffer,
) -> tuple[int, list[tuple[str, int, int, str]], list[tuple[int, list[tuple[int, int, int, int]]]]]: ...
def decode_chunk(
    data: Buffer,
    start: int,
    size: int,
    physical_type: int,
    max_definition_level: int,
    rows: int,
    decompress: Callable[[memoryview, int], Buffer] | None,
) -> tuple[bytearray, bytearray | None, bytearray]: ...
