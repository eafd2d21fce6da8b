"""Datasets: procedural scenes written in the real on-disk formats, and the checks every runner uses."""
from transfer.data.bad_images import (BadImageError, check_command, guard_image_folder, guard_mapper, image_loader,
                                      read_rgb)
from transfer.data.generate import FORMATS, make_dataset, make_demo_data
from transfer.data.locate import DATASET_FORMATS, check_dataset, default_roots, find_dataset
from transfer.data.problems import DatasetError, Problem

__all__ = ["DATASET_FORMATS", "FORMATS", "BadImageError", "DatasetError", "Problem", "check_command", "check_dataset", "default_roots",
           "find_dataset", "guard_image_folder", "guard_mapper", "image_loader", "make_dataset", "make_demo_data",
           "read_rgb"]
