#!/usr/bin/env python
"""Pretrain a ResNet with SSA, SEED or MoCo v2 on an ImageFolder dataset.

    python tools/pretrain.py --method ssa --data DIR --work-dir DIR [--teacher CKPT] [key=value ...]
    torchrun --nproc_per_node=8 tools/pretrain.py --method ssa ...   # several GPUs (or nodes)
    python tools/pretrain.py --launcher slurm --nodes 2 --gpus-per-node 8 --partition P ...   # a SLURM job
"""
import argparse
import sys
from pathlib import Path

from transfer.cli import run_main


def main() -> None:
    parser = argparse.ArgumentParser(prog="pretrain.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("ssa", "seed", "moco_v2"), default=None,
                        help="method (default: the config's, ssa without --config)")
    parser.add_argument("--config", help="config file (default: configs/pretrain/<method>.yaml)")
    parser.add_argument("--data", help="ImageFolder dataset (its train/ split is used), or a root holding imagefolder/")
    parser.add_argument("--work-dir", required=True, help="where checkpoints, logs and curves go")
    parser.add_argument("--teacher", help="teacher checkpoint (any format tools/convert_ckpt.py reads); "
                                          "default: an EMA of the student")
    parser.add_argument("--arch", help="student: resnet18 | resnet50 | ... (model.arch)")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="total batch over all processes (train.batch_size)")
    parser.add_argument("--image-size", type=int, help="side of each view (data.image_size)")
    parser.add_argument("--max-steps", type=int, help="shorten the schedule to N steps (train.max_steps)")
    parser.add_argument("--save-every", type=int, help="steps between checkpoints (train.save_every)")
    parser.add_argument("--workers", type=int, help="data-loading workers per process (data.workers)")
    parser.add_argument("--seed", type=int, help="seed")
    parser.add_argument("--check-images", action="store_true", default=None,
                        help="decode every image before training (data.check_images)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue WORK_DIR/checkpoint_last.pth (or CKPT)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="typed config overrides, e.g. optim.lr=3e-2 loss.aggregation_weight=0 aggregation.rho=1.0 "
                             "(the key must exist in configs/pretrain/base.yaml and the value fit its type)")
    from transfer.slurm import add_slurm_flags, submit_pretrain

    args = add_slurm_flags(parser).parse_intermixed_args()
    if args.launcher == "slurm":  # the same command as a SLURM job, requeued (and resumed) on preemption
        return submit_pretrain(args, sys.argv[1:])

    from transfer.engine.launch import is_main_process
    from transfer.engine.workdir import check_output_path, claim_work_dir
    from transfer.overrides import check_range
    from transfer.pretrain import load_config, train

    for flag, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                             ("--image-size", args.image_size, 32), ("--max-steps", args.max_steps, 1),
                             ("--save-every", args.save_every, 1), ("--workers", args.workers, 0),
                             ("--seed", args.seed, 0)):
        check_range(flag, value, low)
    flags = {"data.root": args.data, "teacher.checkpoint": args.teacher, "model.arch": args.arch,
             "train.epochs": args.epochs, "train.batch_size": args.batch_size, "data.image_size": args.image_size,
             "train.max_steps": args.max_steps, "train.save_every": args.save_every, "data.workers": args.workers,
             "data.check_images": args.check_images,
             "seed": args.seed}
    method = args.method or (None if args.config else "ssa")
    work_dir = Path(args.work_dir)
    check_output_path(work_dir, "--work-dir")
    config = load_config(args.config, args.overrides, method=method, values=flags)
    # one writer per work dir (rank 0 holds the lock, released on exit; a dead holder's lock is taken over)
    with claim_work_dir(work_dir, writer=is_main_process()) as claim:
        claim.started()
        train(config, args.work_dir, resume=args.resume)


if __name__ == "__main__":
    run_main(main)
