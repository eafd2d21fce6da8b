"""Datasets: procedural scenes written in the real on-disk formats, and the checks every runner uses."""
from transfer.data.generate import FORMATS, make_dataset, make_demo_data
from transfer.data.locate import check_dataset, default_roots, find_dataset
from transfer.data.problems import DatasetError, Problem

__all__ = ["FORMATS", "DatasetError", "Problem", "check_dataset", "default_roots", "find_dataset",
           "make_dataset", "make_demo_data"]
