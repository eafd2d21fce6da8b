"""Fixtures shared by the whole suite: small procedural datasets, made once per session."""
from __future__ import annotations

import shutil
from collections.abc import Callable
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
