"""The source layout never shadows the standard library's `operator` module."""

import operator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_a_source_root_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert (ROOT / "operator" / "natflow" / "__init__.py").exists()


def test_stdlib_operator_is_importable() -> None:
    assert operator.itemgetter.__module__ == "operator"
