from typing_extensions import Buffer

class TextScanner:
    def __init__(
        self,
        width: int,
        fields: tuple[int, ...],
        eni_names: tuple[str, ...],
        nat_enis: tuple[tuple[bytes, int], ...],
        nat_addresses: tuple[tuple[int, int], ...],
        inside: tuple[tuple[int, int], ...],
        window: tuple[int, int] | None,
        fallback: tuple[int, int] | None,
        limits: tuple[int, int, int, int, int],
        regional: tuple[tuple[bytes, int], ...] = (),
    ) -> None: ...
    def scan(self, buffer: bytes, start: int, end: int, first_line: int) -> tuple[int, list[tuple[int, int, int]]]: ...
    def scan_columns(
        self,
        columns: tuple[
            tuple[int, int, Buffer | None, Buffer, tuple[Buffer, ...]]
            | tuple[int, int, Buffer | None, Buffer, tuple[Buffer, ...], Buffer],
            ...,
        ],
        rows: int,
    ) -> list[int]: ...
    def merge_rows(self, rows: dict[tuple[str, str, int, int, str, str], list[int]]) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def times(self) -> tuple[int, int] | None: ...
    def unclassified(self) -> dict[str, tuple[int, int]]: ...

def row_columns(
    rows: dict[tuple[str, str, int, int, str, str], list[int]],
) -> tuple[
    list[str],
    bytearray,
    list[str],
    bytearray,
    list[str],
    list[str],
    bytearray,
    list[int],
    list[int],
    bytearray,
    bytearray,
]: ...
def filter_lines(
    buffer: Buffer,
    start: int,
    end: int,
    width: int,
    fields: tuple[int, ...],
    ipv4: Buffer,
    texts: tuple[bytes, ...],
    collect_fields: tuple[int, ...],
    collect_ipv4: Buffer,
    collect_inside: Buffer,
    max_line: int,
) -> tuple[int, int, list[tuple[int, int, int]], bytes]: ...
