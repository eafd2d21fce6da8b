"""`tools/run_transfer.sh voc07_svm` and `voc07_lowshot_svm`: linear SVMs on a frozen backbone's VOC2007 features.

The features (pooled res5 of trainval and test, `configs/classification/voc07_svm.yaml`) are
extracted once per run; each trial then trains and tests the SVMs (`svm.py`, `lowshot.py`).
Reports `map` and `ap_<class>` (voc07_svm), `map_k<n>` and `map_k<n>_sample_sd` (the mean and
the population std over the 5 samples, named so as not to be taken for a std over trials)
(voc07_lowshot_svm), in percent. The SVMs are deterministic: voc07_svm's trials repeat
one result; voc07_lowshot_svm's seed draws the samples.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from transfer.classification.adapter import CONFIGS, TorchAdapter, cached_trial
from transfer.classification.features import extract_features
from transfer.classification.lowshot import low_shot_map
from transfer.classification.svm import POSITIVE, train_and_test_svms
from transfer.classification.transforms import val_transform
from transfer.classification.voc07 import VOCImages, check_positives, image_targets, read_image_set
from transfer.data import check_command, image_loader
from transfer.data.voc import VOC_CLASSES
from transfer.engine.runner import Run, run_task, say
from transfer.errors import UserError
from transfer.fileio import sha256_file

CONFIG = {"voc07_svm": CONFIGS / "voc07_svm.yaml", "voc07_lowshot_svm": CONFIGS / "voc07_lowshot_svm.yaml"}
RESULT_FILE = "svm_result.json"  # a trial's APs and chosen costs, read back on resume


class VOC07SVMAdapter(TorchAdapter):
    """VOC07 features once, then the full (`lowshot=False`) or low-shot SVM protocol per trial."""

    data_format = "voc07"  # VOC2007 only

    def __init__(self, task: str):
        super().__init__(task, CONFIG[task], "features")
        self.lowshot = task == "voc07_lowshot_svm"

    def prepare(self, cfg: dict[str, Any], run: Run) -> dict[str, Any]:
        """Targets of trainval and test (from the annotations) and the frozen backbone's pooled features."""
        svm, feat = cfg["svm"], cfg["features"]
        classes = list(svm["classes"] or VOC_CLASSES)
        unknown = [c for c in classes if c not in VOC_CLASSES]
        if unknown:
            raise UserError(f"svm.classes: {', '.join(map(str, unknown))} not VOC classes; expected some of "
                            f"{', '.join(VOC_CLASSES)}")
        voc = run.data_root / "VOC2007"
        sets = {}
        for key in ("train_set", "test_set"):
            ids = read_image_set(voc, svm[key])
            targets = image_targets(voc, ids, classes)
            check_positives(targets, classes, voc, svm[key])
            sets[key] = (ids, targets)
        backbone, info, amp = self.frozen_backbone(run, cfg["model"]["arch"])
        transform = val_transform(feat["crop_size"], feat["resize_size"])
        load = image_loader(check_command("voc07", run.data_root))  # a bad image mid-run: one line naming the file
        batch = max(1, int(feat["batch_size"]) // self.procs.world_size)
        features = {key: extract_features(backbone, VOCImages(voc, ids, transform, load), self.procs, batch,
                                          int(feat["workers"]), amp)[0].cpu()
                    for key, (ids, _) in sets.items()}
        n_train, n_test = (len(sets[k][0]) for k in ("train_set", "test_set"))
        say(f"features: {n_train} {svm['train_set']} / {n_test} {svm['test_set']} images x {backbone.out_channels}")
        notes = [f"{self.task} of {info['arch']} from {run.args.weights or 'random init'} ({info.get('source')}); "
                 f"VOC2007 {svm['train_set']} {n_train} / {svm['test_set']} {n_test} images, {len(classes)} classes, "
                 f"{backbone.out_channels}-d pooled features, crop {feat['crop_size']} (resize {feat['resize_size']})"]
        if run.args.max_iters is not None:
            notes.append("--max-iters has no effect: the SVMs are solved to convergence")
        if self.lowshot:
            present = int((sets["train_set"][1] == POSITIVE).sum(0).min())
            clipped = [int(k) for k in cfg["lowshot"]["shots"] if int(k) > present]
            if clipped:
                notes.append(f"low-shot k={', '.join(map(str, clipped))}: a class has only {present} present "
                             f"{svm['train_set']} images, so those k keep all of them (clipped, not skipped)")
        return {"classes": classes, "info": info, "notes": notes, "targets": {k: t for k, (_, t) in sets.items()},
                "features": features, "weights_sha": sha256_file(run.weights) if run.weights else None}

    def iterations(self, cfg: dict[str, Any]) -> int:
        """0: no gradient-descent schedule (the SVMs are solved to convergence)."""
        return 0

    def run_trial(self, cfg: dict[str, Any], run: Run, trial_dir: Path, seed: int, resume: bool) -> dict[str, float]:
        """The SVMs of this trial (read back from trial_dir when resuming the same run)."""
        st, svm = self.state, cfg["svm"]
        identity = {"weights_sha256": st["weights_sha"], "arch": st["info"]["arch"], "config": cfg,
                    "seed": seed if self.lowshot else None}
        compute = self._lowshot if self.lowshot else self._full
        return cached_trial(trial_dir / RESULT_FILE, identity, resume, self.procs,
                            lambda: compute(cfg, seed))["metrics"]

    def _split(self) -> tuple:
        st = self.state
        return (st["features"]["train_set"], st["targets"]["train_set"], st["features"]["test_set"],
                st["targets"]["test_set"])

    def _full(self, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
        svm, classes = cfg["svm"], self.state["classes"]
        out = train_and_test_svms(*self._split(), [float(c) for c in svm["costs"]], int(svm["cross_val_folds"]),
                                  float(svm["positive_weight"]), self.procs.device, say=say)
        metrics = {"map": 100 * float(out["ap"].mean())}
        metrics.update({f"ap_{c}": 100 * float(ap) for c, ap in zip(classes, out["ap"])})
        return {"metrics": metrics, "cost": dict(zip(classes, out["cost"].tolist())),
                "cross_val_ap": {c: row for c, row in zip(classes, out["cv_ap"].tolist())}}

    def _lowshot(self, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
        svm, low = cfg["svm"], cfg["lowshot"]
        out = low_shot_map(*self._split(), [float(c) for c in svm["costs"]], [int(k) for k in low["shots"]],
                           int(low["samples"]), seed, float(svm["positive_weight"]), self.state["classes"],
                           self.procs.device, say=say)
        if out["notes"]:
            say(f"low-shot: {len(out['notes'])} draws had fewer images than asked for and kept them all "
                f"(listed in {RESULT_FILE})")
        metrics = {}
        for k, (mean, std) in out["map"].items():
            metrics[f"map_k{k}"], metrics[f"map_k{k}_sample_sd"] = mean, std
        return {"metrics": metrics, "cost": out["cost"], "notes": out["notes"],
                "test_map": {k: v.tolist() for k, v in out["test_map"].items()}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.weights` by the VOC07 (low-shot) SVM protocol on `args.data`; writes WORK_DIR/metrics.json."""
    return run_task(args, VOC07SVMAdapter(args.task))
