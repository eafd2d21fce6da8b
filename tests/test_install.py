"""The installed stack imports and its compiled parts run: a broken install fails here, not later."""
import importlib

import numpy as np
import pytest
import torch


@pytest.mark.parametrize("module", [
    "torchvision", "mmcv.ops", "mmengine", "mmdet", "mmseg", "pycocotools.coco", "faster_coco_eval",
    "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling", "cv2"])
def test_imports(module):
    importlib.import_module(module)


def test_pinned_versions():
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import torchvision

    assert torch.__version__.split("+")[0] == "2.13.0"
    assert torchvision.__version__.split("+")[0] == "0.28.0"
    assert np.__version__ == "2.3.5"
    assert (mmcv.__version__, mmengine.__version__, mmdet.__version__, mmseg.__version__) == \
        ("2.1.0", "0.10.7", "3.3.0", "1.2.2")


def test_torchvision_ops_on_cpu():
    from torchvision.ops import nms, roi_align

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feat = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    out = roi_align(feat, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=1, spatial_scale=1.0, aligned=True)
    assert out.item() == pytest.approx(feat.mean().item())


def test_mmcv_compiled_ops_on_cpu():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feat = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    out = RoIAlign(1, spatial_scale=1.0, sampling_ratio=2, aligned=True)(feat, rois)
    assert out.item() == pytest.approx(feat.mean().item())
