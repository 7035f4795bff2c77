"""``python -m bench``: natflow's reading speed and memory against plain baselines, as one table.

Every figure is a separate child process, timed by wall clock, its input files read once before
(untimed: every figure reads from the page cache); peak memory is the child's ``ru_maxrss`` from
``os.wait4`` (the largest single process, workers included) and the largest sum of the RSS of the
child and its descendants, sampled from /proc every 20 ms.

    (a) gzip text, `natflow attribute` end to end on the vectorised path, against a plain-Python
        gzip + str.split() loop summing one ENI's bytes by source over the same files;
    (b) the same on the reference (record-at-a-time) path;
    (c) Parquet (GZIP pages with checksums, as AWS writes it) of the same records, `natflow attribute`
        end to end, against the same plain-Python baseline; for context, against pyarrow reading the
        batches with a Python loop summing one ENI's bytes by source (the plain-Python way to read
        Parquet), pyarrow decoding the used columns of every row with its threads (nothing reduced)
        and natflow decoding in its own process (no decoder processes: the cost of the process hop);
        the document must be the reference reader's on the same objects;
    (d) peak memory of (a) at the main size and at ten times it (it must not grow); the larger
        data set repeats the main one's objects under other names (copies: natflow reads each file once).
    (e) cluster dumps: a 150,000-pod `kubectl get pods -A -o json` through load_cluster (bench.dumps);
        `--only dumps` runs this figure alone.

Both natflow paths must print the same document; the bench says so or fails. Data is generated
once (seeded) under bench/out/ and reused. `--figures` runs some figures only (e.g. `--figures c`).
"""

from __future__ import annotations

import argparse
import compileall
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench import trace as bench_trace

T = TypeVar("T")

OUT = Path(__file__).resolve().parent / "out"
MB = 1 << 20


@dataclass
class Run:
    """One measured child process."""

    seconds: float
    cpu_seconds: float  # user + system, the process and its workers (os.wait4)
    max_rss: int  # bytes, the largest single process (os.wait4)
    tree_rss: int  # bytes, the largest sampled sum over the process and its descendants
    output: str
    read_seconds: float | None  # natflow's time inside the reader, when it reports it


@dataclass
class Row:
    figure: str
    natflow: str
    baseline: str
    ratio: str
    target: str
    verdict: str
    cpu: str = "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M records (10M for the memory figure)")
    parser.add_argument("--records", type=int, help="records for (a)-(c), a multiple of --per-file")
    parser.add_argument("--large", type=int, help="records for the memory figure (d)")
    parser.add_argument("--per-file", type=int, default=1_000_000, help="records per object (default 1M, ~26 MB gz)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", type=Path, default=OUT, help="where generated objects are kept (default bench/out)")
    parser.add_argument("--figures", default="abcdef+", help="the figures to run: any of a, b, c, d, e, f "
                        "and + (the IP map's and the operator's); default all")  # fmt: skip
    parser.add_argument("--only", choices=("dumps", "trace"), help="one figure alone: dumps = (e), trace = (f)")
    args = parser.parse_args(argv)
    figures = {"dumps": {"e"}, "trace": {"f"}}.get(args.only or "", set(args.figures))
    if figures == {"e"}:
        from bench import dumps

        print_table(dumps.run(args.data, args.quick))
        return 0
    per_file = 250_000 if args.quick and args.per_file == 1_000_000 else args.per_file
    records = args.records or (1_000_000 if args.quick else 10_000_000)
    large = args.large or records * 10
    started = time.perf_counter()
    load_before = f"{os.getloadavg()[0]:.1f}"
    # natflow as installed (pip writes the bytecode), even where PYTHONDONTWRITEBYTECODE is set:
    # otherwise every child would compile natflow's modules again.
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "operator" / "natflow", quiet=1)

    # Generated in a child: this process stays small, so that its children's ru_maxrss is theirs
    # (Linux carries the parent's RSS into a child's ru_maxrss across fork and exec).
    print(f"generating {large:,} records ({records:,} also as Parquet) under {args.data} ...", file=sys.stderr)
    slots = records // per_file  # the larger data set covers the same time: same reduced rows
    generate = [sys.executable, "-m", "bench.run", "generate", str(args.data), str(per_file), str(slots), str(slots)]
    kinds = "text" if figures <= {"a", "b", "d", "f"} else "both"
    dataset = json.loads(subprocess.run([*generate, str(records // per_file), kinds], check=True,
                                        capture_output=True, text=True).stdout)  # fmt: skip
    if "d" in figures:
        larger = json.loads(subprocess.run([*generate, str(large // per_file), "text"], check=True,
                                           capture_output=True, text=True).stdout)  # fmt: skip
    print(f"  ready after {time.perf_counter() - started:.0f} s", file=sys.stderr)

    inputs = ["--cluster", dataset["cluster"], "--aws", dataset["aws"], "-o", "json"]

    def natflow(reader: str, files: list[str]) -> Run:
        command = [sys.executable, "-m", "bench.run", "natflow", reader, str(args.workers), "attribute", *inputs]
        return measure([*command, "--flow-logs", *files], f"natflow {reader}")

    size = f"{records / 1e6:g}M"
    rows: list[Row] = []
    documents: list[tuple[str, str, str]] = []  # (what, document, the reference's document)
    if figures & {"a", "b", "c", "d"}:  # the plain-Python baseline (gzip + split) of every reading figure
        python_baseline = measure(child("gzip-split", dataset["text"]), "gzip + split baseline")
    if figures & {"a", "b", "d"}:
        vectorised = natflow("vectorised", dataset["text"])
        check_read(vectorised, records)
        rows += [
            speed(f"(a) gzip text rec/s, {size}, vectorised, end to end", records, vectorised, python_baseline, 5e6),
            speed(f"    the same, reader only ({args.workers} threads)", records, vectorised, python_baseline, None),
        ]
    if figures & {"a", "b"}:
        reference = natflow("reference", dataset["text"])
        check_read(reference, records)
        rows.append(speed(f"(b) gzip text rec/s, {size}, reference path", records, reference, python_baseline, None))
        documents.append(("gzip text, vectorised", vectorised.output, reference.output))
    if "c" in figures:
        parquet = natflow("vectorised", dataset["parquet"])
        in_process = natflow("in-process", dataset["parquet"])
        parquet_baseline = measure(child("pyarrow-python", dataset["parquet"]), "pyarrow + Python loop baseline")
        decode_only = measure(child("pyarrow-decode", dataset["parquet"]), "pyarrow decoding only")
        parquet_reference = natflow("reference", dataset["parquet"])
        for run in (parquet, in_process, parquet_reference):
            check_read(run, records)
        documents.append(("Parquet, vectorised", parquet.output, parquet_reference.output))
        documents.append(("Parquet, decoding in-process", in_process.output, parquet_reference.output))
        rows += [
            speed(f"(c) Parquet (gzip) rec/s, {size}, end to end", records, parquet, python_baseline, 4e6, ratio=5),
            speed("    the same, reader only", records, parquet, python_baseline, None),
            speed("    the same, decoding in-process (no process hop)", records, in_process, python_baseline, None),
            speed("    natflow against a pyarrow + Python loop", records, parquet, parquet_baseline, None),
            speed("    pyarrow decoding the used columns only (context)", records, decode_only, python_baseline, None),
            speed(f"    Parquet, reference reader, {size}", records, parquet_reference, python_baseline, None),
            memory(f"    peak RSS, Parquet {size}, all processes", parquet.tree_rss),
        ]
    if "d" in figures:
        big = natflow("vectorised", larger["text"])
        check_read(big, large)
        rows += [
            memory(f"(d) peak RSS, gzip text {size}, all processes", vectorised.tree_rss),
            memory(f"    peak RSS, gzip text {large / 1e6:g}M, all processes", big.tree_rss),
            speed(f"    gzip text rec/s, {large / 1e6:g}M", large, big, python_baseline, 5e6, baseline_records=records),
        ]
    if "e" in figures:
        from bench import dumps

        rows += dumps.run(args.data, args.quick)
    if "f" in figures:
        if not figures & {"a", "b", "d"}:
            vectorised = natflow("vectorised", dataset["text"])
        trace_run = measure(bench_trace.command(inputs[:4], dataset["text"], args.workers), "natflow trace")
        rows += bench_trace.rows(trace_run, vectorised, records, Row)
    if "+" in figures:
        rows += other_figures(args.quick)
    print_table(rows)
    same = True
    for what, document, expected in documents:
        identical = json.loads(document) == json.loads(expected)
        same = same and identical
        print(f"\n{what} and reference documents: {'identical' if identical else 'DIFFERENT'}")
    print(f"{args.workers} thread(s); bench took {time.perf_counter() - started:.0f} s; load average {load_before} "
          f"before, {os.getloadavg()[0]:.1f} after (rates are wall clock: other load on the machine lowers them)")
    return 0 if same else 1


def check_read(run: Run, size: int) -> None:
    read = json.loads(run.output)["stats"]["recordsRead"]
    if read != size:
        raise SystemExit(f"natflow read {read} records, the data set holds {size}")


def speed(
    figure: str,
    records: int,
    run: Run,
    baseline: Run,
    target: float | None,
    baseline_records: int | None = None,
    ratio: float | None = None,
) -> Row:
    """A rate against the baseline's; `target` records/s and, when given, `ratio` times the baseline."""
    reader_only = figure.lstrip().startswith("the same, reader")
    seconds = run.read_seconds if reader_only and run.read_seconds else run.seconds
    rate, base = records / seconds, (baseline_records or records) / baseline.seconds
    met = target is not None and rate >= target and (ratio is None or rate >= ratio * base)
    verdict = "-" if target is None else ("pass" if met else "fail")
    cpu = "-" if reader_only else f"{run.cpu_seconds:.1f} / {baseline.cpu_seconds:.1f}"
    goal = "-" if target is None else f">= {target / 1e6:g}M" + (f" and >= {ratio:g}x" if ratio else "")
    return Row(figure, f"{rate / 1e6:.2f}M", f"{base / 1e6:.2f}M", f"{rate / base:.1f}x", goal, verdict, cpu)


def memory(figure: str, peak: int) -> Row:
    return Row(figure, f"{peak / MB:.0f} MB", "-", "-", "<= 400 MB", "pass" if peak <= 400 * MB else "fail")


def other_figures(quick: bool) -> list[Row]:
    """The IP map's, the operator's and regional NAT records' figures from their own modules, as rows of the
    same table."""
    from bench import ipmap, operator_events, regional

    found: list[Row] = []
    figures = [*ipmap.run(quick), *operator_events.run(quick), *regional.run(quick)]
    for figure, value, baseline, target, unit in figures:
        # Memory and seconds: lower is better; rates: higher.
        lower_is_better = figure.endswith((" MB", " s")) or unit.startswith("MB")
        verdict = "pass" if (value <= target if lower_is_better else value >= target) else "fail"
        shown = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
        label = unit.split(";")[0] if len(unit.split(";")[0]) <= 10 else ""
        found.append(Row(
            figure, f"{shown} {label}".strip(), f"{baseline:,.1f}" if baseline else "-",
            f"{value / baseline:.2f}x" if baseline else "-",
            f"{'<=' if lower_is_better else '>='} {target:,.1f}" if target < 100 else
            f"{'<=' if lower_is_better else '>='} {target:,.0f}",
            verdict,
        ))  # fmt: skip
    return found


def print_table(rows: list[Row]) -> None:
    header = Row("figure", "natflow", "baseline", "ratio", "target", "pass/fail", "CPU s natflow / baseline")
    cells = [
        [row.figure, row.natflow, row.baseline, row.ratio, row.target, row.verdict, row.cpu] for row in [header, *rows]
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def child(kind: str, files: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.run", kind, *files]


def read_inputs(command: list[str]) -> None:
    """Read every file the command names (and those in the folders it names) once, untimed, so that
    each figure reads its inputs from the page cache: the machine reclaims pages left cold for a few
    minutes, and a figure that read from disk would measure the disk."""
    for argument in command:
        path = Path(argument)
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                with open(file, "rb") as handle:
                    while handle.read(1 << 24):
                        pass


def measure(command: list[str], label: str) -> Run:
    """Run `command` to its end, its inputs read once before: wall time, peak RSS (one process; all
    processes) and its stdout."""
    read_inputs(command)
    print(f"running {label} ...", file=sys.stderr)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        sampler = TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read().decode(), stderr.read().decode()
    if process.returncode:
        raise SystemExit(f"{label} failed ({process.returncode}):\n{errors}")
    read_seconds = next((float(line.split("=")[1]) for line in errors.splitlines() if line.startswith(READ_MARK)), None)
    print(f"  {seconds:.1f} s, {usage.ru_maxrss / 1024:.0f} MB", file=sys.stderr)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    tree_rss = max(sampler.peak, usage.ru_maxrss * 1024)
    return Run(seconds, cpu_seconds, usage.ru_maxrss * 1024, tree_rss, output, read_seconds)


class TreeSampler(threading.Thread):
    """The largest sum of RSS over a process and its descendants, sampled from /proc."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self.done = threading.Event()
        self.page = resource.getpagesize()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, self.total())

    def stop(self) -> None:
        self.done.set()
        self.join()

    def total(self) -> int:
        parents: dict[int, int] = {}
        resident: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry)] = int(fields[1])
            resident[int(entry)] = int(fields[21]) * self.page
        tree = {self.root}
        changed = True
        while changed:
            found = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree |= found
            changed = bool(found)
        return sum(resident.get(pid, 0) for pid in tree)


# -- children -------------------------------------------------------------------------------------

READ_MARK = "bench-read-seconds="


def run_natflow(reader: str, workers: int, argv: list[str]) -> int:
    """`natflow attribute --reader R --workers N`, timing its read phase for the "reader only" figure."""
    import natflow.cli as cli

    def timed(read: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any) -> T:
            started = time.perf_counter()
            result = read(*args)
            print(f"{READ_MARK}{time.perf_counter() - started}", file=sys.stderr)
            return result

        return run

    attribute = cli.attribute

    def timed_attribute(args: argparse.Namespace, flow_logs: cli.FlowLogFiles | Exception) -> dict[str, Any]:
        # The readers are timed where they are defined, imported only now: natflow imports them in
        # attribute(), after its Parquet decoders have started, and so must the bench.
        import natflow.flowlogs.readers as readers
        import natflow.flowlogs.vectorised as vectorised

        readers.read_all = timed(readers.read_all)
        vectorised.read_all_parallel = timed(vectorised.read_all_parallel)
        return attribute(args, flow_logs)

    cli.attribute = timed_attribute
    if reader == "in-process":
        in_process_decoding()
        reader = "vectorised"
    return cli.main([*argv, "--reader", reader, "--workers", str(workers)])


def generate(root: str, per_file: int, slots: int, distinct: int, files: int, kinds: str) -> int:
    """Write the data set (or find it written) and print where it is, as JSON."""
    from bench import flowgen

    dataset = flowgen.generate(Path(root), files, per_file, slots, parquet=kinds == "both", distinct=distinct)
    paths = {"text": dataset.text, "parquet": dataset.parquet, "aws": dataset.aws, "cluster": dataset.cluster}
    print(json.dumps(paths, default=str))
    return 0


def gzip_split(paths: list[str]) -> int:
    """The plain-Python baseline: gzip + str.split(), summing one NAT ENI's bytes by source."""
    from bench.flowgen import NAT_GATEWAYS

    eni = NAT_GATEWAYS[0][1]
    by_source: dict[str, int] = defaultdict(int)
    records = 0
    for path in paths:
        with gzip.open(path, "rt") as handle:
            next(handle)  # the header
            for line in handle:
                parts = line.split()
                records += 1
                if parts[2] == eni and parts[9] != "-":
                    by_source[parts[3]] += int(parts[9])
    print(json.dumps({"records": records, "sources": len(by_source)}))
    return 0


def pyarrow_python(paths: list[str]) -> int:
    """The plain-Python Parquet baseline: pyarrow reads the batches, a Python loop sums one NAT ENI's
    bytes by source over the rows (as the text baseline does over split lines)."""
    import pyarrow.parquet as pq

    from bench.flowgen import NAT_GATEWAYS

    eni = NAT_GATEWAYS[0][1]
    by_source: dict[str, int] = defaultdict(int)
    records = 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(columns=["interface_id", "srcaddr", "bytes"]):
            for interface, source, size in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                records += 1
                if interface == eni and size is not None:
                    by_source[source] += size
    print(json.dumps({"records": records, "sources": len(by_source)}))
    return 0


def pyarrow_decode(paths: list[str]) -> int:
    """Context: pyarrow decoding the used columns of every row with its threads, nothing reduced."""
    import pyarrow.parquet as pq

    from natflow.flowlogs.fields import USED_FIELDS

    columns = [name.replace("-", "_") for name in USED_FIELDS]
    rows = sum(pq.read_table(path, columns=columns).num_rows for path in paths)
    print(json.dumps({"rows": rows}))
    return 0


def in_process_decoding() -> None:
    """natflow with its Parquet decoding in this process (for the cost of the process hop)."""
    from natflow.flowlogs import decoders

    class InProcess(decoders.DecoderPool):
        def call(self, function: str, args: tuple[Any, ...], timeout: float) -> Any:
            return decoders.resolve(function)(*args)

        def warm(self, count: int, preload: str) -> None:
            """No decoder processes to start."""

    pool = InProcess()
    decoders.pool = lambda: pool


def run_child(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "natflow":
        return run_natflow(rest[0], int(rest[1]), rest[2:])
    if kind == "generate":
        return generate(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]), rest[5])
    if kind == "gzip-split":
        return gzip_split(rest)
    if kind == "pyarrow-python":
        return pyarrow_python(rest)
    if kind == "pyarrow-decode":
        return pyarrow_decode(rest)
    raise SystemExit(f"unknown child {kind!r}")


if __name__ == "__main__":
    sys.exit(run_child(sys.argv[1:]))
