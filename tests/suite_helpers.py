"""What the suite's tests share: the shrunk run flags and small checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

# The procedural VOC scenes hold 5 of the 20 classes: the SVMs of the others would have no positive image.
SCENE_CLASSES = "[bottle,tvmonitor,boat,bird,aeroplane]"
# Every run shrunk for the CPU; CPU-sized batches (detection's protocol is 8 GPUs x 2); fewer SVM shots, samples
# and logistic-regression strengths; batches of 5 for fine-tuning (the 1 % and 10 % subsets of the small
# ImageFolder are one image per class, and BN cannot train on a last batch of one image).
SHRUNK = ["--gpus", "0", "--max-iters", "2", "--input-size", "64", "linear:linear.workers=0",
          "linear:linear.batch_size=8", "linear:linear.precompute_features=true",
          *[f"{task}:{key}" for task in ("voc", "coco", "cityscapes_ins")
            for key in ("protocol_gpus=1", "train_dataloader.batch_size=2", "custom_hooks.0.num_iters=1")],
          "voc12aug:protocol_gpus=1", "voc12aug:train_dataloader.batch_size=2",
          *[f"{task}:{key}" for task in ("voc07_svm", "voc07_lowshot_svm")
            for key in ("features.workers=0", "features.batch_size=8", f"svm.classes={SCENE_CLASSES}")],
          "voc07_lowshot_svm:lowshot.shots=[1,2]", "voc07_lowshot_svm:lowshot.samples=2",
          "manyshot_logreg:features.workers=0", "manyshot_logreg:features.batch_size=8",
          "manyshot_logreg:logreg.lambda_count=3",
          *[f"{task}:{key}" for task in ("semisup_1pct", "semisup_10pct")
            for key in ("finetune.workers=0", "finetune.batch_size=5")],
          "finetune_full:finetune.workers=0", "finetune_full:finetune.batch_size=4"]


def r18_checkpoint(path: Path, seed: int) -> Path:
    """A torchvision ResNet-18 state dict with random weights (the runners convert it)."""
    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path
