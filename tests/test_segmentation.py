"""Cityscapes FCN transfer: the protocol config, weight loading, and runs through the runner on procedural data."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from transfer.cli import add_transfer_flags
from transfer.data import DatasetError, make_dataset
from transfer.data.cityscapes import CLASSES, LABEL_SUFFIX, TRAIN_SUFFIX
from transfer.engine.config import load_mm_config
from transfer.engine.devices import replace_syncbn
from transfer.errors import UserError
from transfer.segmentation.config import check_backbone_loads, set_backbone_depth, set_input_size, set_pretrained
from transfer.segmentation.runner import DEFAULT_CONFIG, run

from conftest import run_tool

REPO = Path(__file__).resolve().parent.parent
# Short CPU runs: one process with 2 images per iteration, no validation loop
# (the test loop evaluates the same val split right after training).
CPU = ["--gpus", "0", "protocol_gpus=1", "train_dataloader.batch_size=2"]
NO_VAL = ["val_cfg=None", "val_dataloader=None", "val_evaluator=None"]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: on 2 cores shared with other jobs, 2 threads ran these runs 5-7x slower (spinning)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def transfer_args(*argv: str) -> argparse.Namespace:
    """The parsed flags of `tools/run_transfer.sh cityscapes ARGV`."""
    args = add_transfer_flags(argparse.ArgumentParser()).parse_intermixed_args(list(argv))
    args.task = "cityscapes"
    return args


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MoCo v2-style ResNet-18 checkpoint (random weights, query and key encoders, queue): the runner converts it."""
    path = tmp_path_factory.mktemp("weights") / "moco_r18.pth.tar"
    torch.manual_seed(0)
    query, key = torchvision.models.resnet18(), torchvision.models.resnet18()
    query.fc = key.fc = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128))
    state = {f"module.encoder_q.{k}": v for k, v in query.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v for k, v in key.state_dict().items()})
    state["module.queue"] = torch.randn(128, 64)
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def r18_mmlab(r18_checkpoint: Path) -> Path:
    """The same weights converted to OpenMMLab format (the runner uses such a file as it is)."""
    from transfer.checkpoint import convert_checkpoint

    out = r18_checkpoint.with_name("resnet18_mmlab.pth")
    convert_checkpoint(r18_checkpoint, out, "mmlab", verify=False)  # loading is what these tests check
    return out


def protocol_config():
    """The protocol config as the runner loads it."""
    return load_mm_config(DEFAULT_CONFIG)


def test_protocol_config_matches_denscl() -> None:
    """The config holds DenseCL's Cityscapes settings (shared/docs/protocols.md)."""
    cfg = protocol_config()
    backbone = cfg.model.backbone
    assert backbone.type == "ResNet" and not backbone.get("deep_stem", False) and backbone.depth == 50
    assert backbone.dilations == (1, 1, 2, 4) and backbone.strides == (1, 2, 1, 1) and not backbone.norm_eval
    assert backbone.norm_cfg.type == "SyncBN" and cfg.model.decode_head.norm_cfg.type == "SyncBN"
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert (head.in_channels, head.channels, head.num_convs, head.concat_input) == (2048, 512, 2, True)
    assert aux.loss_decode.loss_weight == 0.4 and head.align_corners and aux.align_corners
    assert cfg.model.test_cfg == dict(mode="slide", crop_size=(769, 769), stride=(513, 513))
    train = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    assert train["RandomResize"].scale == (2049, 1025) and train["RandomResize"].ratio_range == (0.5, 2.0)
    assert train["RandomCrop"].crop_size == (769, 769) and "PhotoMetricDistortion" in train
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)
    (poly,) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ("PolyLR", 0.9, 1e-4, 40000)
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size * cfg.protocol_gpus == 8
    assert cfg.model.data_preprocessor.mean == [123.675, 116.28, 103.53]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_converted_weights_load_with_no_missing_keys(arch: str, tmp_path: Path) -> None:
    """After init_weights(), every backbone parameter and buffer equals the converted checkpoint's tensor."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from transfer.checkpoint import convert_checkpoint, load_backbone

    register_all_modules()
    source = tmp_path / f"{arch}.pth"
    torch.manual_seed(1)
    model = getattr(torchvision.models, arch)()
    with torch.no_grad():  # non-trivial BN statistics, so buffers are checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    torch.save(model.state_dict(), source)
    converted = tmp_path / f"{arch}_mmlab.pth"
    convert_checkpoint(source, converted, "mmlab", verify=False)  # this test is the verification
    state_dict, info = load_backbone(converted)

    cfg = protocol_config()
    replace_syncbn(cfg._cfg_dict)
    set_backbone_depth(cfg, int(info["arch"][6:]))
    set_pretrained(cfg, converted)
    check_backbone_loads(cfg, state_dict, str(converted))
    seg = MODELS.build(cfg.model)
    seg.init_weights()
    backbone_state = {k: v for k, v in seg.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in backbone_state if k not in state_dict]
    assert not missing
    differing = [k for k, v in backbone_state.items() if not torch.equal(v, state_dict[k])]
    assert not differing, differing[:5]
    assert torch.equal(backbone_state["conv1.weight"], model.conv1.weight.detach())


def test_deep_stem_backbone_is_refused(r18_mmlab: Path) -> None:
    """mmseg's ResNetV1c would keep a random stem: the check names the fix before any training."""
    from transfer.checkpoint import load_backbone

    state_dict, _ = load_backbone(r18_mmlab)
    cfg = protocol_config()
    set_backbone_depth(cfg, 18)
    cfg.model.backbone.type = "ResNetV1c"
    with pytest.raises(UserError, match="deep_stem=False"):
        check_backbone_loads(cfg, state_dict, str(r18_mmlab))
    # the converse: a standard-stem backbone given a deep-stem checkpoint keeps a random conv1
    deep = {k: v for k, v in state_dict.items() if not k.startswith(("conv1.", "bn1."))}
    deep["stem.0.weight"] = torch.zeros(32, 3, 3, 3)
    cfg.model.backbone.type = "ResNet"
    with pytest.raises(UserError, match=r"standard stem but the checkpoint has a deep stem \(ResNetV1c/d\)"):
        check_backbone_loads(cfg, deep, str(r18_mmlab))


def test_input_size_scales_the_geometry() -> None:
    """--input-size S scales crop, resize scales and slide window by S/769 (2049x1025 -> 256x128 at S=96)."""
    cfg = protocol_config()
    note = set_input_size(cfg, 96)
    train = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    test = {step.type: step for step in cfg.test_dataloader.dataset.pipeline}
    assert train["RandomCrop"].crop_size == (96, 96) and cfg.model.data_preprocessor.size == (96, 96)
    assert train["RandomResize"].scale == (256, 128) and test["Resize"].scale == (256, 128)
    assert cfg.model.test_cfg.crop_size == (96, 96) and cfg.model.test_cfg.stride == (64, 64)
    assert "(96, 96)" in note
    with pytest.raises(UserError, match="at least 16"):
        set_input_size(cfg, 8)


def check_metrics(record: dict, iterations: int) -> dict[str, float]:
    """The metrics.json record of a cityscapes run is complete and in range; returns its metrics."""
    assert record["task"] == "cityscapes" and record["backend"] == "mmseg"
    assert record["iterations"] == iterations
    metrics = record["metrics"]
    assert 0 <= metrics["mIoU"] <= 100 and 0 <= metrics["aAcc"] <= 100
    per_class = {k[4:]: v for k, v in metrics.items() if k.startswith("IoU.")}
    assert set(per_class) <= set(CLASSES) and len(per_class) >= 15  # the scenes use 17 of the 19 classes
    assert all(0 <= v <= 100 for v in per_class.values())
    assert math.isclose(metrics["mIoU"], float(np.mean(list(per_class.values()))), rel_tol=1e-9)
    return metrics


def test_smoke_run_through_run_transfer_sh(demo_data: Path, r18_checkpoint: Path, tmp_path: Path) -> None:
    """tools/run_transfer.sh cityscapes: converts the weights, trains a few iterations, writes metrics.json."""
    work = tmp_path / "work"
    with one_torch_thread():
        done = run_tool("run_transfer.py", "cityscapes", "--weights", r18_checkpoint, "--data", demo_data,
                        "--work-dir", work, "--max-iters", "2", "--input-size", "64", *CPU, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((work / "metrics.json").read_text())
    check_metrics(record, iterations=2)
    assert record["weights_sha256"] and any("ResNet-18" in n for n in record["notes"])
    assert "[transfer] trial 1/1" in done.stderr and "eta:" in done.stdout  # progress; mmengine logs to stdout
    assert list(work.glob("converted/*mmlab*"))  # the MoCo checkpoint was converted, into the work dir


def trivial_miou(cityscapes: Path) -> float:
    """The best mIoU a constant prediction reaches on the val split (a model that ignores the image)."""
    counts = np.zeros(256, np.int64)
    for path in (cityscapes / "gtFine" / "val").glob(f"*/*{TRAIN_SUFFIX}"):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    present = counts[:19] > 0
    # predicting class c everywhere: IoU_c = share of c among evaluated pixels, 0 for the other present classes
    return float(100 * (counts[:19] / counts[:19].sum()).max() / present.sum())


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run from random initialisation long enough to learn: ResNet-18, 64 px crops; predictions kept as PNGs.

    The lr is raised from the protocol's 0.01 to 0.05: 300 iterations from random
    weights is a far shorter schedule than the protocol's 40k from pretrained ones.
    """
    root = tmp_path_factory.mktemp("learn")
    data = make_dataset("cityscapes", root / "cityscapes", seed=3, num_images=32, num_val=8)
    preds = root / "pred"
    common = ["--data", str(data), "--input-size", "64", *CPU, *NO_VAL, "model.backbone.depth=18"]
    with one_torch_thread():
        trained = run(transfer_args(*common, "--work-dir", str(root / "work"), "--max-iters", "300",
                                    "optim_wrapper.optimizer.lr=0.05", f"+test_evaluator.output_dir={preds}"))
        # the same model untrained: one iteration at lr 0 (only BN statistics move)
        untrained = run(transfer_args(*common, "--work-dir", str(root / "untrained"), "--max-iters", "1",
                                      "optim_wrapper.optimizer.lr=0"))
    return {"record": trained, "untrained": untrained, "data": data, "preds": preds}


def test_learning_run_beats_untrained(learning_run: dict) -> None:
    """Fine-tuning learns: mIoU clearly above the untrained model's and the best constant prediction's."""
    metrics = check_metrics(learning_run["record"], iterations=300)
    untrained = learning_run["untrained"]["metrics"]["mIoU"]
    constant = trivial_miou(learning_run["data"])
    assert constant < 5 and untrained < 5
    assert metrics["mIoU"] > max(2 * untrained, 3 * constant, untrained + 4), (metrics["mIoU"], untrained, constant)


def test_learning_run_metric_equals_official(learning_run: dict, tmp_path: Path) -> None:
    """The reported IoUs equal cityscapesscripts' on the very predictions the model made (to 1e-6)."""
    from transfer.segmentation.evaluation import evaluate_official, prediction_files, train_ids_to_label_ids

    gts = sorted((learning_run["data"] / "gtFine" / "val").glob(f"*/*{LABEL_SUFFIX}"))
    label_id_files = []
    for path in prediction_files(learning_run["preds"], gts):  # train-id PNGs written by IoUMetric
        out = tmp_path / path.name
        Image.fromarray(train_ids_to_label_ids(np.asarray(Image.open(path)))).save(out)
        label_id_files.append(out)
    official = evaluate_official(label_id_files, gts)
    metrics = learning_run["record"]["metrics"]
    assert abs(metrics["mIoU"] - official["mIoU"]) <= 1e-6
    for name, value in official["IoU"].items():
        if math.isnan(value):
            assert f"IoU.{name}" not in metrics
        else:
            assert abs(metrics[f"IoU.{name}"] - value) <= 1e-6, name


def test_resume_after_interruption(demo_data: Path, tmp_path: Path) -> None:
    """A run killed after its iteration-2 checkpoint resumes there and finishes the schedule."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    @HOOKS.register_module(name="InterruptAtIter", force=True)
    class InterruptAtIter(Hook):
        """Raise KeyboardInterrupt after the given (1-based) training iteration."""

        def __init__(self, at: int) -> None:
            self.at = at

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if runner.iter + 1 == self.at:
                raise KeyboardInterrupt

    work = tmp_path / "work"
    base = ["--data", str(demo_data), "--work-dir", str(work), "--max-iters", "4", "--input-size", "64", *CPU,
            *NO_VAL, "model.backbone.depth=18"]
    with one_torch_thread():
        with pytest.raises(KeyboardInterrupt):
            run(transfer_args(*base, "+custom_hooks=[{'type': 'InterruptAtIter', 'at': 3}]"))
        assert (work / "iter_2.pth").is_file() and not (work / "metrics.json").exists()
        record = run(transfer_args(*base))
    check_metrics(record, iterations=4)
    logs = sorted(work.glob("*/vis_data/scalars.json"))
    assert len(logs) == 2  # one per run
    resumed_iters = [json.loads(line)["iter"] for line in logs[-1].read_text().splitlines() if '"loss"' in line]
    assert resumed_iters == [3, 4]  # the second run trained only what was left
    assert json.loads((work / "metrics.json").read_text())["metrics"] == record["metrics"]


def test_missing_train_ids_point_to_prepare_cityscapes(demo_data: Path, tmp_path: Path) -> None:
    """A Cityscapes tree with only labelIds (the official download) is refused with the command that fixes it."""
    import shutil

    root = tmp_path / "cityscapes"
    shutil.copytree(demo_data / "cityscapes", root)
    for path in root.glob(f"gtFine/*/*/*{TRAIN_SUFFIX}"):
        path.unlink()
    with pytest.raises(DatasetError, match="prepare_cityscapes.py"):
        run(transfer_args("--data", str(root), "--work-dir", str(tmp_path / "w"), *CPU))


def test_bad_flags_are_refused_before_training(demo_data: Path, r18_mmlab: Path, tmp_path: Path) -> None:
    """Another backend, a depth that contradicts the weights, or a deep-stem backbone: UserError, nothing trained."""
    common = ["--data", str(demo_data), "--work-dir", str(tmp_path / "w"), *CPU]
    with pytest.raises(UserError, match="cityscapes runs on mmseg"):
        run(transfer_args(*common, "--backend", "detectron2"))
    with pytest.raises(UserError, match="resnet18"):
        run(transfer_args(*common, "--weights", str(r18_mmlab), "model.backbone.depth=50"))
    with pytest.raises(UserError, match="deep stem"):
        run(transfer_args(*common, "--weights", str(r18_mmlab), "model.backbone.type=ResNetV1c"))
    assert not list((tmp_path / "w").glob("iter_*.pth"))
