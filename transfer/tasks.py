"""The transfer tasks of `tools/run_transfer.sh`, in one table: what runs each, on what data, how often, from which configs.

The command line, the suite and the demo read this table; a new protocol is an
entry here and its config file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transfer.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MMDET = CONFIGS / "detection" / "mmdet"
DETECTRON2 = CONFIGS / "detection" / "detectron2"


@dataclass(frozen=True)
class Variant:
    """A named config of a task (`coco:fpn_2x`): its file on each backend that has it, and its column title."""

    title: str
    configs: dict[str, Path]


@dataclass(frozen=True)
class Task:
    """One task of `tools/run_transfer.sh TASK`."""

    runner: str  # `module:function`, called with the parsed flags; writes WORK_DIR/metrics.json
    data_format: str  # what --data holds (`transfer.data` formats)
    title: str  # how tables name it
    backends: tuple[str, ...]  # the first is the default
    metrics: tuple[str, ...]  # what tables show of its metrics.json, the headline first
    trials: int = 1  # the protocol's own number of trials (VOC: the mean of 5)
    variants: dict[str, Variant] = field(default_factory=dict)  # the first is the default; none: the runner's config

    def config(self, variant: str | None, backend: str | None) -> Path | None:
        """The config file of `variant` on `backend` (None: the task's default config)."""
        if variant is None:
            return None
        backend = backend or self.backends[0]
        configs = self.variants[variant].configs
        if backend not in configs:
            raise UserError(f"{variant} has no {backend} config; run it with --backend "
                            f"{' or '.join(configs)}")
        return configs[backend]


COCO_VARIANTS = {
    "c4_1x": Variant("COCO C4 1x", {"mmdet": MMDET / "mask-rcnn_r50-c4-syncbn_1x_coco.py",
                                    "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_C4_1x.yaml"}),
    "c4_2x": Variant("COCO C4 2x", {"mmdet": MMDET / "mask-rcnn_r50-c4-syncbn_2x_coco.py",
                                    "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_C4_2x.yaml"}),
    "fpn_1x": Variant("COCO FPN 1x", {"mmdet": MMDET / "mask-rcnn_r50-fpn-syncbn_1x_coco.py",
                                      "detectron2": DETECTRON2 / "coco_mask_rcnn_R_50_FPN_1x.yaml"}),
    "fpn_2x": Variant("COCO FPN 2x", {"mmdet": MMDET / "mask-rcnn_r50-fpn-syncbn_2x_coco.py"}),
    "retinanet_1x": Variant("COCO RetinaNet 1x", {"mmdet": MMDET / "retinanet_r50-fpn-syncbn_1x_coco.py"}),
}

TASKS: dict[str, Task] = {
    "linear": Task("transfer.classification.runner:run", "imagefolder", "linear", ("torch",), ("top1", "knn_top1")),
    "voc": Task("transfer.detection.runner:run", "voc", "voc", ("mmdet", "detectron2"), ("AP", "AP50", "AP75"),
                trials=5),
    "coco": Task("transfer.detection.runner:run", "coco", "coco", ("mmdet", "detectron2"), ("bbox_AP", "segm_AP"),
                 variants=COCO_VARIANTS),
    "cityscapes": Task("transfer.segmentation.runner:run", "cityscapes", "cityscapes", ("mmseg",), ("mIoU",)),
    # FCN R50-D8 on PASCAL VOC 2012 + SBD aug, 20k iterations (mmselfsup's benchmark)
    "voc12aug": Task("transfer.segmentation.runner:run", "voc12aug", "VOC12aug FCN", ("mmseg",), ("mIoU",)),
    # frozen features: VOC07 linear SVMs (Goyal et al. 2019), all labels and low-shot; many-shot logistic
    # regression (Ericsson et al. 2021); fine-tuning on ImageNet's 1% and 10% label subsets (mmselfsup)
    "voc07_svm": Task("transfer.classification.voc07_runner:run", "voc07", "VOC07 SVM", ("torch",), ("map",)),
    "voc07_lowshot_svm": Task("transfer.classification.voc07_runner:run", "voc07", "VOC07 low-shot SVM", ("torch",),
                              ("map_k1", "map_k8", "map_k96")),
    "manyshot_logreg": Task("transfer.classification.logreg_runner:run", "imagefolder", "many-shot logreg",
                            ("torch",), ("top1",)),
    "semisup_1pct": Task("transfer.classification.finetune_runner:run", "imagefolder", "semi-sup 1%", ("torch",),
                         ("top1", "top5")),
    "semisup_10pct": Task("transfer.classification.finetune_runner:run", "imagefolder", "semi-sup 10%", ("torch",),
                          ("top1", "top5")),
    # full fine-tuning on every label (VISSL's transfer benchmark)
    "finetune_full": Task("transfer.classification.finetune_runner:run", "imagefolder", "full fine-tuning",
                          ("torch",), ("top1", "top5")),
    # Mask R-CNN R50-FPN on Cityscapes instances (MoCo's protocol); the headline is the official Cityscapes
    # mask AP. detectron2: configs/detection/detectron2/cityscapes_mask_rcnn_R_50_FPN.yaml, not wired here yet.
    "cityscapes_ins": Task("transfer.detection.runner:run", "cityscapes", "cityscapes instances", ("mmdet",),
                           ("cityscapes_AP", "segm_AP", "bbox_AP")),
}


def task_named(name: str) -> Task:
    """The task `name`, or a UserError listing the tasks."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[name]
