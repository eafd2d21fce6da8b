"""Semi-supervised full fine-tuning on SimCLR-format label subsets: the subset file, the training, the task."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from transfer.classification.features import load_frozen_backbone
from transfer.classification.finetune import STATE_FILE, FineTuned, finetune, read_subset
from transfer.classification.transforms import train_transform, val_transform
from transfer.cli import run_transfer
from transfer.data.imagefolder import write_imagefolder, write_subset_file
from transfer.distributed import Processes
from transfer.errors import UserError

CPU = Processes(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
CFG = {"epochs": 1, "lr": 0.1, "head_lr_mult": 10.0, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
       "milestones": [], "gamma": 0.2}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40 train (8 per class) and 10 val pattern images, with the SimCLR-format 10 % and 1 % subset files the
    writer makes."""
    return write_imagefolder(tmp_path_factory.mktemp("semisup") / "data", 0, 40, 10, size=32, kind="patterns")


def test_subset_files_in_simclr_format(folder):
    lines = (folder / "10percent.txt").read_text().splitlines()
    train = ImageFolder(str(folder / "train"))
    names = {p.split("/")[-1] for p, _ in train.samples}
    assert len(lines) == 5 and set(lines) <= names  # one file name a line; 8 per class -> 1 each, never 0
    assert sorted({train.samples[i][1] for i in read_subset(folder / "10percent.txt", train.samples,
                                                            folder / "train")}) == [0, 1, 2, 3, 4]
    assert write_subset_file(folder, 10).read_text() == "\n".join(lines) + "\n"  # deterministic


def test_subset_lines_by_name_or_path_and_bad_lines(folder, tmp_path):
    train = ImageFolder(str(folder / "train"))
    first, second = (Path(path).relative_to(folder / "train").as_posix() for path, _ in train.samples[:2])
    listing = tmp_path / "subset.txt"
    listing.write_text(f"{first}\n\n{second.split('/')[-1]} 3\n")
    assert read_subset(listing, train.samples, folder / "train") == [0, 1]
    listing.write_text(f"{first}\nn01440764_10026.JPEG\n")
    with pytest.raises(UserError, match=r"subset.txt:2: n01440764_10026.JPEG is not an image of"):
        read_subset(listing, train.samples, folder / "train")
    with pytest.raises(UserError, match="does not exist; pass finetune.subset=FILE"):
        read_subset(tmp_path / "missing.txt", train.samples, folder / "train")


class _Recording(Dataset):
    """A dataset that records which indices were read."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.read = dataset, []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.read.append(index)
        return self.dataset[index]


def test_finetune_trains_backbone_on_the_subset_only(folder, tmp_path):
    train = _Recording(ImageFolder(str(folder / "train"), transform=train_transform(32)))
    val = ImageFolder(str(folder / "val"), transform=val_transform(32, 37))
    subset = [3, 7, 12, 20, 31, 38]
    backbone, _ = load_frozen_backbone(None, "resnet18")
    model = FineTuned(backbone, 5)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    result = finetune(model, train, subset, CFG, CPU, tmp_path, val, batch=3, workers=0, amp=False,
                      say=lambda _: None)
    assert sorted(train.read) == subset  # one epoch: each subset image once, no other image
    after = model.backbone.state_dict()
    conv = "trunk.layer1.0.conv1.weight"
    assert not torch.equal(before[conv], after[conv])  # the backbone trains
    assert not torch.equal(before["trunk.bn1.running_mean"], after["trunk.bn1.running_mean"])  # BN in train mode
    assert set(result) == {"top1", "top5"} and (tmp_path / STATE_FILE).is_file()


def test_semisup_runs_end_to_end_and_resumes(folder, tmp_path, capsys):
    work = tmp_path / "semi"
    argv = ["semisup_1pct", "--data", str(folder), "--work-dir", str(work), "--gpus", "0", "--input-size", "32",
            "--max-iters", "2", "model.arch=resnet18", "finetune.workers=0", "finetune.batch_size=5"]
    record = run_transfer(argv)
    assert set(record["metrics"]) == {"top1", "top5"} and record["iterations"] == 2
    assert any("on 5 of 40 train images (1percent.txt)" in n for n in record["notes"])
    (work / "metrics.json").unlink()  # as if killed after the last checkpoint
    capsys.readouterr()
    again = run_transfer(argv)
    assert "resumed fine-tuning" in capsys.readouterr().err and again["metrics"] == record["metrics"]


def test_semisup_refuses_a_subset_line_naming_a_missing_image(folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "10percent.txt").write_text((data / "10percent.txt").read_text() + "gone.png\n")
    with pytest.raises(UserError, match=r"10percent.txt:6: gone.png is not an image of"):
        run_transfer(["semisup_10pct", "--data", str(data), "--work-dir", str(tmp_path / "w"), "--gpus", "0",
                      "--input-size", "32", "model.arch=resnet18", "finetune.workers=0"])


def test_full_fine_tuning_is_vissls_recipe_on_every_label(folder, tmp_path):
    """finetune_full: VISSL's transfer fine-tuning (Nesterov SGD, no weight decay, 105 epochs, 4 steps), all images."""
    from transfer.classification.finetune import make_optimizer
    from transfer.classification.finetune_runner import CONFIG
    from transfer.engine.config import read_yaml_config

    ft = read_yaml_config(CONFIG["finetune_full"])["finetune"]
    assert (ft["subset"], ft["epochs"], ft["milestones"], ft["gamma"]) == (None, 105, [30, 60, 90, 100], 0.1)
    assert ft["nesterov"] is True and ft["weight_decay"] == 0.0 and (ft["lr"], ft["batch_size"]) == (0.1, 256)
    backbone, _ = load_frozen_backbone(None, "resnet18")
    optimizer = make_optimizer(FineTuned(backbone, 5), {**CFG, "nesterov": ft["nesterov"]})
    assert all(group["nesterov"] for group in optimizer.param_groups)
    record = run_transfer(["finetune_full", "--data", str(folder), "--work-dir", str(tmp_path / "w"), "--gpus", "0",
                           "--input-size", "32", "--max-iters", "1", "model.arch=resnet18", "finetune.workers=0",
                           "finetune.batch_size=8"])
    assert any("on 40 of 40 train images (all labels)" in n for n in record["notes"])
