"""Cityscapes instance segmentation (`tools/run_transfer.sh cityscapes_ins`): the protocol's numbers, the instance
annotations mmdet reads, an end-to-end run on the CPU and the refusals."""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from detection_helpers import MMDET_SMALL, REPO
from mmengine.config import Config
from PIL import Image

from transfer.cli import run_transfer
from transfer.data import make_dataset
from transfer.detection.cityscapes_instances import ANNOTATIONS
from transfer.errors import UserError

from conftest import run_tool

CONFIG = REPO / "configs" / "detection" / "mmdet" / "mask-rcnn_r50-fpn-syncbn_24k_cityscapes.py"
D2_CONFIG = REPO / "configs" / "detection" / "detectron2" / "cityscapes_mask_rcnn_R_50_FPN.yaml"
CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")  # label ids 24..33
# CPU-sized: a ResNet-18 at test side 64 (train 50..64), 2 iterations
SMALL = ["--gpus", "0", "--max-iters", "2", "--input-size", "64", "model.backbone.depth=18", *MMDET_SMALL]


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A procedural Cityscapes tree (8 train, 4 val) whose instance annotations (which the generator writes too)
    are made again by the one user command, with --instances."""
    root = make_dataset("cityscapes", tmp_path_factory.mktemp("data") / "cityscapes", num_images=8, num_val=4)
    shutil.rmtree(root / "annotations")
    done = run_tool("prepare_cityscapes.py", root, "--instances", "--workers", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "instancesonly_filtered_gtFine_val.json: " in done.stdout and "instances written" in done.stdout
    return root


def test_config_is_the_protocol() -> None:
    """detectron2's Cityscapes schedule and sizes on our COCO FPN model (SyncBN, trained BN, RGB, precise BN)."""
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.train_cfg.max_iters == 24000 and cfg.param_scheduler[1].milestones == [18000]
    warmup = cfg.param_scheduler[0]
    assert warmup.type == "LinearLR" and (warmup.end, warmup.start_factor) == (1000, 0.001)
    assert cfg.train_dataloader.batch_size * cfg.protocol_gpus == 8 and cfg.auto_scale_lr.base_batch_size == 8
    assert dict(cfg.optim_wrapper.optimizer) == {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    train = cfg.train_dataloader.dataset
    assert train.type == "CityscapesDataset" and train.ann_file == ANNOTATIONS["train"]
    assert cfg.train_dataloader.sampler.type == "InfiniteSampler"
    assert train.pipeline[2].scales == [(2048, s) for s in (800, 832, 864, 896, 928, 960, 992, 1024)]
    test = cfg.test_dataloader.dataset
    assert test.ann_file == ANNOTATIONS["val"] and test.pipeline[1].scale == (2048, 1024)
    assert [e.type for e in cfg.test_evaluator] == ["CocoAPMetric", "CityscapesAPMetric"]
    assert cfg.test_evaluator[0].metric == ["bbox", "segm"] and cfg.test_evaluator[0].ann_file.endswith(test.ann_file)
    model = cfg.model
    assert model.roi_head.bbox_head.num_classes == model.roi_head.mask_head.num_classes == len(CLASSES)
    backbone = model.backbone
    assert (backbone.norm_cfg.type, backbone.norm_eval, backbone.frozen_stages, backbone.style) == \
        ("SyncBN", False, -1, "pytorch") and backbone.init_cfg is None
    assert model.neck.norm_cfg.type == model.roi_head.mask_head.norm_cfg.type == "SyncBN"
    box_head = model.roi_head.bbox_head
    assert box_head.type == "Shared4Conv1FCBBoxHead" and box_head.norm_cfg.type == "SyncBN"
    assert model.data_preprocessor.bgr_to_rgb and model.data_preprocessor.std == [58.395, 57.12, 57.375]
    assert any(h.type == "PreciseBNHook" for h in cfg.custom_hooks)


def test_input_size_is_relative_to_the_1024_test_side() -> None:
    """--input-size S makes the test shorter side S (not 1.28 S), the training range 800..1024 becomes 0.78 S..S,
    and anchors and FPN level sizes shrink by the same S / 1024."""
    from transfer.detection.mmdet_config import set_input_size

    cfg = Config.fromfile(str(CONFIG))
    note = set_input_size(cfg, 512)
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (1024, 512)
    scales = cfg.train_dataloader.dataset.pipeline[2].scales
    assert scales[0] == (1024, 400) and scales[-1] == (1024, 512)
    assert cfg.model.rpn_head.anchor_generator.scales == [4.0]  # 32..512 px anchors -> 16..256
    assert cfg.model.roi_head.bbox_roi_extractor.finest_scale == 28.0
    assert "400..512 for training, 512 for testing" in note


def instances_in_map(path: Path) -> Counter:
    """Class name -> instances in an instanceIds map (label id * 1000 + k; the 8 classes that have instances)."""
    ids = np.unique(np.asarray(Image.open(path)))
    return Counter(CLASSES[[24, 25, 26, 27, 28, 31, 32, 33].index(i // 1000)] for i in ids if i >= 1000)


def test_annotations_agree_with_the_instance_maps(cityscapes: Path) -> None:
    """Every image of train and val, each instance of its instanceIds map once with its class and pixel count;
    the street scenes do hold instances (persons, cars, ...)."""
    for split in ("train", "val"):
        coco = json.loads((cityscapes / ANNOTATIONS[split]).read_text())
        assert [c["name"] for c in coco["categories"]] == list(CLASSES)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        images = sorted(cityscapes.glob(f"leftImg8bit/{split}/*/*_leftImg8bit.png"))
        assert sorted(i["file_name"] for i in coco["images"]) == sorted(f"{p.parent.name}/{p.name}" for p in images)
        for image in coco["images"]:
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            gt = cityscapes / "gtFine" / split / image["file_name"].replace("leftImg8bit.png", "gtFine_instanceIds.png")
            assert Counter(names[a["category_id"]] for a in anns) == instances_in_map(gt), gt
            assert not any(a["iscrowd"] for a in anns)
            ids = np.asarray(Image.open(gt))
            areas = sorted(int((ids == i).sum()) for i in np.unique(ids) if i >= 1000)
            assert sorted(int(a["area"]) for a in anns) == areas
        assert len(coco["annotations"]) >= len(images)  # 2-6 things per scene, some hidden behind others


def test_cityscapes_ins_end_to_end(cityscapes: Path, tmp_path: Path) -> None:
    """The task runs from the command line's words and writes box AP, mask AP and the Cityscapes AP; the
    evaluation's PNGs went to the work dir and are gone."""
    work = tmp_path / "w"
    record = run_transfer(["cityscapes_ins", "--data", str(cityscapes.parent), "--work-dir", str(work), *SMALL])
    assert record == json.loads((work / "metrics.json").read_text())
    assert (record["task"], record["backend"], record["iterations"]) == ("cityscapes_ins", "mmdet", 2)
    for name in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50", "cityscapes_AP", "cityscapes_AP50"):
        assert 0.0 <= record["metrics"][name] <= 100.0, name
    assert any("shorter side 50..64 for training, 64 for testing" in note for note in record["notes"])
    dumped = Config.fromfile(str(work / CONFIG.name))
    assert dumped.test_evaluator[1].outfile_prefix == str(work / "cityscapes_eval")
    assert dumped.test_evaluator[1].seg_prefix == f"{cityscapes}/gtFine/val"
    assert not (work / "cityscapes_eval").exists()


def test_missing_annotations_are_one_clear_error(cityscapes: Path, tmp_path: Path) -> None:
    """Without the instance annotations: one UserError naming the file and the command; nothing left behind."""
    root = tmp_path / "cityscapes"
    shutil.copytree(cityscapes, root, ignore=shutil.ignore_patterns("annotations"))
    work = tmp_path / "w"
    command = re.escape(f"python tools/prepare_cityscapes.py {root} --instances")
    with pytest.raises(UserError, match=rf"instancesonly_filtered_gtFine_train\.json.*{command}"):
        run_transfer(["cityscapes_ins", "--data", str(root), "--work-dir", str(work), *SMALL])
    assert not work.exists()


def test_detectron2_backend_is_refused(cityscapes: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--backend detectron2: cityscapes_ins runs on mmdet only"):
        run_transfer(["cityscapes_ins", "--data", str(cityscapes), "--work-dir", str(tmp_path / "w"),
                      "--backend", "detectron2", *SMALL])


def test_detectron2_yaml_has_the_protocol_numbers() -> None:
    """The YAML's own keys, read as data (detectron2 need not be installed): detectron2's Cityscapes settings."""
    d2 = yaml.safe_load(D2_CONFIG.read_text())
    assert d2["_BASE_"] == "coco_mask_rcnn_R_50_FPN_1x.yaml" and d2["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == 8
    assert d2["INPUT"]["MIN_SIZE_TRAIN"] == "(800, 832, 864, 896, 928, 960, 992, 1024)"
    sizes = d2["INPUT"]
    assert (sizes["MIN_SIZE_TEST"], sizes["MAX_SIZE_TRAIN"], sizes["MAX_SIZE_TEST"]) == (1024, 2048, 2048)
    assert d2["SOLVER"] == {"IMS_PER_BATCH": 8, "BASE_LR": 0.01, "STEPS": "(18000,)", "MAX_ITER": 24000}
    assert d2["DATASETS"] == {"TRAIN": "(\"cityscapes_fine_instance_seg_train\",)",
                              "TEST": "(\"cityscapes_fine_instance_seg_val\",)"}


def detectron2_missing() -> str | None:
    """Why detectron2 cannot be used here, or None."""
    try:
        import detectron2._C  # noqa: F401  (the compiled ops)
    except ImportError as e:
        return f"detectron2 is not importable ({e})"
    return None


MISSING = detectron2_missing()


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_detectron2_yaml_loads_on_detectron2() -> None:
    """On detectron2's defaults, through its _BASE_: the COCO FPN model with SyncBN and the Cityscapes schedule."""
    from transfer.detection.detectron2_backend import load_protocol_config

    cfg = load_protocol_config(D2_CONFIG, [])
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 8 and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.RESNETS.NORM == cfg.MODEL.FPN.NORM == cfg.MODEL.ROI_BOX_HEAD.NORM == "SyncBN"
    assert (cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC) == (4, 1)
    assert cfg.INPUT.MIN_SIZE_TRAIN == (800, 832, 864, 896, 928, 960, 992, 1024) and cfg.INPUT.MIN_SIZE_TEST == 1024
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER) == \
        (8, 0.01, (18000,), 24000)
    assert cfg.TEST.PRECISE_BN.ENABLED and cfg.INPUT.FORMAT == "RGB"
