"""Fixtures shared by the whole suite: small procedural datasets, made once per session."""
from __future__ import annotations

import io
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from transfer.data import make_demo_data

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small set of every format (16 train, 8 val images each) under one root: coco/, voc/, cityscapes/, imagefolder/."""
    root = tmp_path_factory.mktemp("demo_data")
    make_demo_data(root, seed=0, num_images=16, num_val=8)
    return root


@pytest.fixture()
def copy_of(demo_data: Path, tmp_path: Path) -> Callable[[str], Path]:
    """`copy_of(fmt)`: a private copy of one format's procedural dataset, for a test that damages it."""
    def copy(fmt: str) -> Path:
        dst = tmp_path / fmt
        shutil.copytree(demo_data / fmt, dst)
        return dst
    return copy


def run_tool(tool: str, *args: object, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run tools/`tool` as `python tools/TOOL ARGS` would, but in this process (no interpreter start, no imports
    again): its exit code (`sys.exit`, 0 when it returns), stdout and stderr. `env` is added to the environment
    for the call. tests/test_runner.py checks once that the real command line gives the same exit code."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_env = sys.argv, os.getcwd(), dict(os.environ)
    code: int = 0
    try:
        sys.argv = [str(REPO / "tools" / tool), *map(str, args)]
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                runpy.run_path(str(REPO / "tools" / tool), run_name="__main__")
            except SystemExit as e:
                if isinstance(e.code, str):  # sys.exit("message"): printed, exit code 1
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(sys.argv, code, out.getvalue(), err.getvalue())
