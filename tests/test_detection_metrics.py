"""Detection metrics: COCO AP from faster-coco-eval equals pycocotools'; VOC AP follows detectron2's definitions."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from transfer.data import make_dataset
from transfer.data.voc import VOC_CLASSES
from transfer.detection.coco_eval import coco_stats


@pytest.fixture(scope="module")
def det_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Procedural COCO and VOC sets (8 train, 12 val/test images)."""
    root = tmp_path_factory.mktemp("det_metrics")
    make_dataset("coco", root / "coco", seed=3, num_images=8, num_val=12)
    make_dataset("voc", root / "voc", seed=3, num_images=8, num_val=12)
    return root


def noisy_coco_predictions(gt: dict, seed: int) -> list[dict]:
    """Three predictions per ground-truth object: one exact, two jittered, some with a wrong class; masks as RLE."""
    import pycocotools.mask as mask_util

    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    out = []
    for ann in gt["annotations"]:
        img = images[ann["image_id"]]
        for k in range(3):
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.15 * max(w, h), 4) * (k > 0)
            box = [float(x + jitter[0]), float(y + jitter[1]), float(max(1.0, w + jitter[2])),
                   float(max(1.0, h + jitter[3]))]
            mask = np.zeros((img["height"], img["width"]), np.uint8)
            bx, by, bw, bh = (int(round(v)) for v in box)
            mask[max(0, by):by + bh, max(0, bx):bx + bw] = 1
            rle = mask_util.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode()
            cat = ann["category_id"] if rng.random() > 0.2 else int(rng.choice(cat_ids))
            out.append({"image_id": ann["image_id"], "category_id": cat, "bbox": box,
                        "score": float(rng.random()), "segmentation": rle})
    return out


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_equals_pycocotools(det_data: Path, iou_type: str) -> None:
    gt = json.loads((det_data / "coco" / "annotations" / "instances_val2017.json").read_text())
    detections = noisy_coco_predictions(gt, seed=1)
    if iou_type == "segm":
        for det in detections:
            det.pop("bbox")
    fast = coco_stats(gt, detections, iou_type, "faster-coco-eval")
    reference = coco_stats(gt, detections, iou_type, "pycocotools")
    assert 0.02 < reference[0] < 0.99 and 0.02 < reference[1] < 0.99  # non-trivial APs: equality means something
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_coco_stats_without_detections_is_zero(det_data: Path) -> None:
    gt = json.loads((det_data / "coco" / "annotations" / "instances_val2017.json").read_text())
    assert coco_stats(gt, [], "bbox").tolist() == [0.0] * 12


def read_voc_boxes(voc_dir: Path, image_id: str) -> list[tuple[str, list[int]]]:
    """(class name, [xmin, ymin, xmax, ymax]) of an image, as written in its VOC annotation (1-based, inclusive)."""
    tree = ET.parse(voc_dir / "Annotations" / f"{image_id}.xml")
    return [(obj.find("name").text, [int(obj.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
            for obj in tree.findall("object")]


def voc_predictions(voc_dir: Path, seed: int) -> dict[str, list[tuple[str, list[float], float]]]:
    """Per image: jittered copies of the objects (VOC pixel frame, 0.1 px), a few with a wrong class, distinct
    scores with three decimals (detectron2 writes predictions with that precision)."""
    rng = np.random.default_rng(seed)
    ids = (voc_dir / "ImageSets" / "Main" / "test.txt").read_text().split()
    scores = iter(rng.permutation(np.arange(1, 1000))[:1000] / 1000)
    out = {}
    for image_id in ids:
        preds = []
        for name, box in read_voc_boxes(voc_dir, image_id):
            for k in range(3):
                jittered = [round(float(v + rng.normal(0, 4) * (k > 0)), 1) for v in box]
                jittered[2] = max(jittered[2], jittered[0] + 2)
                jittered[3] = max(jittered[3], jittered[1] + 2)
                label = name if rng.random() > 0.2 else str(rng.choice(VOC_CLASSES))
                preds.append((label, jittered, float(next(scores))))
        out[image_id] = preds
    return out


def mmdet_voc_metric(voc_dir: Path, predictions: dict, metric_cls=None, **kwargs) -> dict[str, float]:
    """Evaluate `predictions` (VOC pixel frame) with an mmdet VOC metric, fed as mmdet's VOCDataset and model do
    (mmdet's boxes are the VOC ones minus 1)."""
    if metric_cls is None:
        from transfer.detection.mmdet_voc_metric import PascalVOCAPMetric as metric_cls
    metric = metric_cls(**kwargs)
    metric.dataset_meta = {"classes": VOC_CLASSES, "dataset_type": "VOC2007"}
    samples = []
    for image_id, preds in predictions.items():
        gt = read_voc_boxes(voc_dir, image_id)
        empty = {"bboxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.long)}
        samples.append({
            "gt_instances": {"bboxes": torch.tensor([[v - 1 for v in b] for _, b in gt], dtype=torch.float32),
                             "labels": torch.tensor([VOC_CLASSES.index(n) for n, _ in gt])},
            "ignored_instances": empty,
            "pred_instances": {"bboxes": torch.tensor([[v - 1 for v in b] for _, b, _ in preds], dtype=torch.float32),
                               "scores": torch.tensor([s for _, _, s in preds]),
                               "labels": torch.tensor([VOC_CLASSES.index(n) for n, _, _ in preds])},
        })
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_voc_metric_perfect_predictions_average_over_all_classes(det_data: Path) -> None:
    voc_dir = det_data / "voc" / "VOC2007"
    ids = (voc_dir / "ImageSets" / "Main" / "test.txt").read_text().split()
    perfect = {i: [(n, [float(v) for v in b], 0.9) for n, b in read_voc_boxes(voc_dir, i)] for i in ids}
    present = {n for i in ids for n, _ in read_voc_boxes(voc_dir, i)}
    result = mmdet_voc_metric(voc_dir, perfect)
    # every present class has AP 1 at every IoU; absent classes count as 0, as in detectron2's evaluator
    expected = 100.0 * len(present) / len(VOC_CLASSES)
    assert result == pytest.approx({"AP": expected, "AP50": expected, "AP75": expected, "AP_present": 100.0,
                                    "AP50_present": 100.0, "AP75_present": 100.0, "classes_present": len(present)})


def test_voc_metric_relates_to_mmdet_voc_metric(det_data: Path) -> None:
    """Same matching as mmdet's VOCMetric: its AP50/AP75 (mean over classes with ground truth) x present/20 = ours."""
    from mmdet.evaluation.metrics import VOCMetric

    voc_dir = det_data / "voc" / "VOC2007"
    predictions = voc_predictions(voc_dir, seed=2)
    ours = mmdet_voc_metric(voc_dir, predictions)
    theirs = mmdet_voc_metric(voc_dir, predictions, VOCMetric, iou_thrs=[0.5, 0.75], eval_mode="11points")
    ids = predictions.keys()
    present = len({n for i in ids for n, _ in read_voc_boxes(voc_dir, i)})
    assert 5 < ours["AP50"] < 25 and ours["AP75"] < ours["AP50"] and ours["AP"] < ours["AP50"]
    # theirs are rounded to 3 decimals
    assert ours["AP50"] == pytest.approx(100 * theirs["AP50"] * present / len(VOC_CLASSES), abs=0.1)
    assert ours["AP75"] == pytest.approx(100 * theirs["AP75"] * present / len(VOC_CLASSES), abs=0.1)


def test_voc_metric_equals_detectron2_evaluator(det_data: Path) -> None:
    """On identical predictions, our mmdet VOC metric gives detectron2's PascalVOCDetectionEvaluator's numbers."""
    try:
        import detectron2._C  # noqa: F401  (the compiled ops: an installed detectron2)
    except ImportError as e:
        pytest.skip(f"detectron2 is not importable ({e}): the cross-check needs its VOC evaluator")
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc
    from detectron2.evaluation import PascalVOCDetectionEvaluator
    from detectron2.structures import Boxes, Instances

    voc_dir = det_data / "voc" / "VOC2007"
    predictions = voc_predictions(voc_dir, seed=2)
    name = "voc_2007_test_metric_check"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_pascal_voc(name, str(voc_dir), "test", 2007)
    evaluator = PascalVOCDetectionEvaluator(name)
    evaluator.reset()
    for image_id, preds in predictions.items():
        inst = Instances((240, 320))
        # detectron2's model frame: xmin, ymin shifted by -1 (its evaluator adds the 1 back)
        boxes = [[b[0] - 1, b[1] - 1, b[2], b[3]] for _, b, _ in preds]
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float64))
        inst.scores = torch.tensor([s for _, _, s in preds], dtype=torch.float64)
        inst.pred_classes = torch.tensor([VOC_CLASSES.index(n) for n, _, _ in preds])
        evaluator.process([{"image_id": image_id}], [{"instances": inst}])
    reference = evaluator.evaluate()["bbox"]
    ours = mmdet_voc_metric(voc_dir, predictions)
    assert reference["AP50"] > 5
    for key in ("AP", "AP50", "AP75"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-6), key
