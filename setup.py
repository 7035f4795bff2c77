"""The compiled part of natflow; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

COMPILE_ARGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

setup(
    ext_modules=[
        Extension(
            "natflow.flowlogs._textscan",
            ["operator/natflow/flowlogs/_textscan.c"],
            extra_compile_args=COMPILE_ARGS,
        ),
    ]
)
