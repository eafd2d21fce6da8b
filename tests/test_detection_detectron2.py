"""Detection transfer on detectron2 (`--backend detectron2`), on the CPU; skipped where detectron2 is not installed."""
from __future__ import annotations

from pathlib import Path

import pytest
from detection_helpers import REPO, run_detection, write_resnet_checkpoint

from transfer.engine.runner import RECORD_KEYS
from transfer.errors import UserError

D2_CONFIGS = REPO / "configs" / "detection" / "detectron2"


def detectron2_missing() -> str | None:
    """Why detectron2 cannot be used here, or None."""
    try:
        import detectron2._C  # noqa: F401  (the compiled ops)
    except ImportError as e:
        return f"detectron2 is not importable ({e}); install it from its repository to run these tests"
    return None


MISSING = detectron2_missing()  # the reason is printed in pytest's summary of skipped tests (-ra)
needs_detectron2 = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 backbone checkpoint in OpenMMLab format."""
    return write_resnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "r18.pth")


@pytest.mark.skipif(MISSING is None, reason="detectron2 is installed")
def test_missing_detectron2_is_a_clear_error(demo_data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="detectron2 is not importable.*pip install"):
        run_detection("voc", demo_data, tmp_path / "w", backend="detectron2")


@needs_detectron2
def test_protocol_yamls_read_like_the_protocol_table() -> None:
    from transfer.detection.detectron2_backend import load_protocol_config

    voc = load_protocol_config(D2_CONFIGS / "voc0712_faster_rcnn_R_50_C4_24k.yaml", [])
    assert voc.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm" and voc.MODEL.RESNETS.NORM == "SyncBN"
    assert voc.MODEL.BACKBONE.FREEZE_AT == 0 and voc.TEST.PRECISE_BN.ENABLED and not voc.MODEL.RESNETS.STRIDE_IN_1X1
    assert (voc.SOLVER.IMS_PER_BATCH, voc.SOLVER.BASE_LR, voc.SOLVER.MAX_ITER) == (16, 0.02, 24000)
    assert tuple(voc.SOLVER.STEPS) == (18000, 22000) and voc.SOLVER.WARMUP_ITERS == 100
    assert tuple(voc.INPUT.MIN_SIZE_TRAIN) == tuple(range(480, 801, 32)) and voc.INPUT.FORMAT == "RGB"
    assert voc.DATASETS.TRAIN == ("voc_2007_trainval", "voc_2012_trainval") and voc.MODEL.ROI_HEADS.NUM_CLASSES == 20
    two_x = load_protocol_config(D2_CONFIGS / "coco_mask_rcnn_R_50_C4_2x.yaml", [])
    assert two_x.MODEL.MASK_ON and two_x.SOLVER.MAX_ITER == 180000 and tuple(two_x.SOLVER.STEPS) == (120000, 160000)
    fpn = load_protocol_config(D2_CONFIGS / "coco_mask_rcnn_R_50_FPN_1x.yaml", ["SOLVER.BASE_LR=0.01"])
    assert fpn.MODEL.FPN.NORM == fpn.MODEL.ROI_BOX_HEAD.NORM == fpn.MODEL.ROI_MASK_HEAD.NORM == "SyncBN"
    assert (fpn.MODEL.ROI_BOX_HEAD.NUM_CONV, fpn.MODEL.ROI_BOX_HEAD.NUM_FC) == (4, 1) and fpn.SOLVER.BASE_LR == 0.01


@needs_detectron2
def test_overrides_are_typed_against_the_cfgnode_defaults() -> None:
    """detectron2 overrides go through transfer.overrides: numbers in any notation, unknown keys and types refused."""
    from transfer.detection.detectron2_backend import load_protocol_config

    path = D2_CONFIGS / "voc0712_faster_rcnn_R_50_C4_24k.yaml"
    cfg = load_protocol_config(path, ["SOLVER.BASE_LR=1e-2", "SOLVER.STEPS=[6, 8]", "MODEL.MASK_ON=false"])
    assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.STEPS == (6, 8) and cfg.MODEL.MASK_ON is False
    with pytest.raises(UserError, match="unknown key 'MODEL.RESNETS.DPETH'"):
        load_protocol_config(path, ["MODEL.RESNETS.DPETH=50"])
    with pytest.raises(UserError, match="SOLVER.MAX_ITER=fast: expected an integer"):
        load_protocol_config(path, ["SOLVER.MAX_ITER=fast"])


@needs_detectron2
@pytest.mark.parametrize("config", ["voc0712_faster_rcnn_R_50_C4_24k.yaml", "coco_mask_rcnn_R_50_FPN_1x.yaml"])
def test_input_size_scales_anchors_and_every_pixel_setting(config: str) -> None:
    """At --input-size 128 the built model's anchors are the protocol's x 0.16 (C4 and FPN), as are the RPN's
    minimum proposal size and, on FPN, the box size that picks a RoI's level (StandardROIHeadsScaled)."""
    from detectron2.modeling import build_model

    from transfer.detection.detectron2_backend import load_protocol_config
    from transfer.detection.detectron2_config import replace_syncbn, set_input_size

    def built(size: int | None) -> tuple:
        cfg = load_protocol_config(D2_CONFIGS / config, ["MODEL.RESNETS.DEPTH=18", "MODEL.RESNETS.RES2_OUT_CHANNELS=64",
                                                         "MODEL.PROPOSAL_GENERATOR.MIN_SIZE=8", "MODEL.DEVICE=cpu"])
        replace_syncbn(cfg)
        note = set_input_size(cfg, size) if size else ""
        model = build_model(cfg)
        sides = [sorted(float(w) for w, h in zip(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]) if abs(w - h) < 1e-3)
                 for a in model.proposal_generator.anchor_generator.cell_anchors]
        return cfg, model, sides, note

    _, full_model, full, _ = built(None)
    cfg, model, small, note = built(128)
    assert [len(level) for level in full] == [len(level) for level in small]
    for full_level, small_level in zip(full, small):
        assert small_level == pytest.approx([0.16 * side for side in full_level], rel=1e-4)
    assert sorted(side for level in full for side in level) == [32.0, 64.0, 128.0, 256.0, 512.0]
    assert model.proposal_generator.min_box_size == pytest.approx(1.28)
    assert "ANCHOR_GENERATOR.SIZES" in note and "PROPOSAL_GENERATOR.MIN_SIZE 8->1.28" in note
    if "FPN" in config:
        assert cfg.MODEL.ROI_HEADS.NAME == "StandardROIHeadsScaled"
        assert full_model.roi_heads.box_pooler.canonical_box_size == 224
        assert model.roi_heads.box_pooler.canonical_box_size == pytest.approx(35.8)
        assert model.roi_heads.mask_pooler.canonical_box_size == pytest.approx(35.8)
    else:
        assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm"


@needs_detectron2
@pytest.mark.parametrize("depth", [18, 50])
def test_extra_norm_res5_head_takes_the_converted_res5(tmp_path: Path, depth: int) -> None:
    """The converted checkpoint's res5.* fills the ROI head's res5 (ResNet-18: basic blocks); only `norm` is new."""
    import pickle

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from transfer.checkpoint import ensure_converted
    from transfer.detection.detectron2_backend import load_protocol_config
    from transfer.detection.detectron2_config import replace_syncbn, set_depth

    ckpt = write_resnet_checkpoint(tmp_path / "r.pth", arch=f"resnet{depth}")
    pkl = ensure_converted(ckpt, "detectron2", tmp_path / "converted")
    cfg = load_protocol_config(D2_CONFIGS / "coco_mask_rcnn_R_50_C4_1x.yaml", ["MODEL.DEVICE=cpu"])
    set_depth(cfg, depth)
    replace_syncbn(cfg)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(pkl))
    with open(pkl, "rb") as f:
        weights = pickle.load(f)["model"]
    state = model.state_dict()
    res5 = {k: v for k, v in weights.items() if k.startswith("res5.")}
    assert res5 and all((state[f"roi_heads.{k}"].numpy() == v).all() for k, v in res5.items())
    backbone = {k: v for k, v in weights.items() if not k.startswith("res5.")}
    assert all((state[f"backbone.{k}"].numpy() == v).all() for k, v in backbone.items())
    assert "roi_heads.res5.norm.weight" in state


@needs_detectron2
def test_voc_c4_r18_end_to_end(demo_data: Path, r18_checkpoint: Path, tmp_path: Path) -> None:
    record = run_detection("voc", demo_data, tmp_path / "voc", "--weights", str(r18_checkpoint),
                           backend="detectron2")
    assert record["backend"] == "detectron2" and set(record["metrics"]) == {
        "AP", "AP50", "AP75", "AP_present", "AP50_present", "AP75_present", "classes_present"}
    assert 1 <= record["metrics"]["classes_present"] <= 5
    assert all(0 <= v <= 100 for v in record["metrics"].values()) and record["iterations"] == 2
    # one work dir layout for every engine: detectron2's own training log is train_log.json, beside our metrics.json
    assert (tmp_path / "voc" / "model_final.pth").is_file() and (tmp_path / "voc" / "train_log.json").is_file()
    assert set(record) == RECORD_KEYS and record["arch"] == "resnet18"


@needs_detectron2
def test_coco_c4_mask_r18_end_to_end(demo_data: Path, r18_checkpoint: Path, tmp_path: Path) -> None:
    record = run_detection("coco", demo_data, tmp_path / "coco", "--weights", str(r18_checkpoint),
                           backend="detectron2")
    assert {"bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"} <= set(record["metrics"])
    assert all(0 <= v <= 100 for v in record["metrics"].values())


@needs_detectron2
def test_coco_fpn_r18_end_to_end(demo_data: Path, tmp_path: Path) -> None:
    record = run_detection("coco", demo_data, tmp_path / "coco", "--config",
                           str(D2_CONFIGS / "coco_mask_rcnn_R_50_FPN_1x.yaml"), "MODEL.RESNETS.DEPTH=18",
                           backend="detectron2")
    assert {"bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"} <= set(record["metrics"])
    assert all(0 <= v <= 100 for v in record["metrics"].values())
