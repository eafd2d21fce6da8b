"""The config mmengine dumps into WORK_DIR is the config that ran: the engine's own inference API on it, with the
run's checkpoint, gives the run's metric (before, --input-size left a stale top-level test_pipeline)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer.cli import run_transfer
from transfer.data.cityscapes import IMG_SUFFIX, TRAIN_SUFFIX

CLASSES = 19


def miou_with_inference_api(config: Path, checkpoint: Path, cityscapes: Path) -> float:
    """mIoU (percent) over the val split of mmseg's `inference_model` with `config` and `checkpoint`, counted as the
    run's evaluator counts it (classes with an empty union left out)."""
    from mmseg.apis import inference_model, init_model

    model = init_model(str(config), str(checkpoint), device="cpu")
    intersect, union = np.zeros(CLASSES, np.int64), np.zeros(CLASSES, np.int64)
    for image in sorted((cityscapes / "leftImg8bit" / "val").glob(f"*/*{IMG_SUFFIX}")):
        label_path = cityscapes / "gtFine" / "val" / image.parent.name / image.name.replace(IMG_SUFFIX, TRAIN_SUFFIX)
        label = np.asarray(Image.open(label_path)).astype(np.int64)
        pred = inference_model(model, str(image)).pred_sem_seg.data[0].numpy().astype(np.int64)
        keep = label != 255
        pred, label = pred[keep], label[keep]
        intersect += np.bincount(label[pred == label], minlength=CLASSES)[:CLASSES]
        union += (np.bincount(pred, minlength=CLASSES)[:CLASSES] + np.bincount(label, minlength=CLASSES)[:CLASSES]
                  - np.bincount(label[pred == label], minlength=CLASSES)[:CLASSES])
    present = union > 0
    return float(100 * np.mean(intersect[present] / union[present]))


def test_cityscapes_dumped_config_reproduces_the_runs_miou(demo_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    record = run_transfer(["cityscapes", "--data", str(demo_data), "--work-dir", str(work), "--gpus", "0",
                           "--max-iters", "2", "--input-size", "64", "protocol_gpus=1", "train_dataloader.batch_size=2",
                           "model.backbone.depth=18"])
    from mmengine.config import Config

    from transfer.segmentation.runner import DEFAULT_CONFIG

    dumped = work / DEFAULT_CONFIG.name  # mmengine's dump of the config the Runner was given
    cfg = Config.fromfile(str(dumped))
    scales = [tuple(next(step for step in pipeline if step["type"] == "Resize")["scale"])
              for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline)]
    assert scales[0] == scales[1] != (2049, 1025)
    miou = miou_with_inference_api(dumped, work / "iter_2.pth", demo_data / "cityscapes")
    assert miou == pytest.approx(record["metrics"]["mIoU"], abs=1e-6)


def test_mmdet_input_size_reaches_the_top_level_pipelines() -> None:
    from transfer.detection.mmdet_backend import DEFAULT_CONFIGS
    from transfer.detection.mmdet_config import set_input_size
    from transfer.engine.config import load_mm_config

    cfg = load_mm_config(DEFAULT_CONFIGS["coco"])
    set_input_size(cfg, 96)
    for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
        resize = next(step for step in pipeline if step["type"] == "Resize")
        assert min(resize["scale"]) == 96  # was 1333x800 in the top-level copy
