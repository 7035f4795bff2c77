#!/bin/sh
# `make sanitize`: the C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc) into
# a temporary copy of the package, and the hostile-input corpus, the fuzzer and the scanner/decoder
# tests run against them (the C extension is the text scanner, which also reduces Parquet columns). Any sanitizer report ends the run with an error.
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
FUZZ_SECONDS=${NATFLOW_FUZZ_SECONDS:-10}
build=$(mktemp -d /tmp/natflow-sanitize.XXXXXX)
trap 'rm -rf "$build"' EXIT
# The Python sources as they are, without the optimised extensions built in place.
tar -C operator --exclude='*.so' --exclude='__pycache__' -cf - natflow | tar -C "$build" -xf -
CC=gcc CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
  LDFLAGS="-fsanitize=address,undefined" \
  "$PYTHON" setup.py --quiet build_ext --build-lib "$build" --build-temp "$build/objects" >"$build/build.log" 2>&1 ||
  { cat "$build/build.log"; exit 1; }
ls "$build"/natflow/flowlogs/_textscan.*.so >/dev/null  # built, or stop here
# ASan must be loaded before the (uninstrumented) Python host, and libstdc++ with it so that ASan finds
# the C++ exceptions pyarrow throws; leaks in the interpreter are not ours.
# Parquet objects are reduced by the same scanner in decoder processes, which inherit the preload.
tests="tests/test_hostile_input.py tests/test_fuzz_text.py tests/test_vectorised.py tests/test_columnar.py
       tests/test_parquet_damage.py tests/test_parquet_fuzz.py tests/test_line_spans.py tests/trace/test_filter_lines.py
       tests/trace/test_long_line.py"
# Reports go to files (pytest captures stderr, and an abort leaves it unprinted): shown, then failed on.
status=0
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$build/report" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$build/report" \
  PYTHONPATH="$build" NATFLOW_FUZZ_SECONDS="$FUZZ_SECONDS" \
  "$PYTHON" -m pytest -q -p no:cacheprovider -k "not 50_mb_without" $tests || status=$?
if ls "$build"/report.* >/dev/null 2>&1; then
  cat "$build"/report.*
  exit 1
fi
exit $status
