"""The transfer runner: one skeleton for every task, and the mmengine plumbing of mmdet and mmseg.

The pieces, one per file:
- `runner.run_task(args, adapter)`: the skeleton every task of tools/run_transfer.sh runs (flags,
  reuse, devices, dataset check, work-dir lock, weights, trials, metrics.json); `runner.Adapter`
  is what an engine supplies (classification.runner, engine.task, detection.detectron2_backend).
- `workdir.claim_work_dir(path)`: create and lock a run's folder; an early error removes it again;
  `workdir.drop_checkpoints(path)`: a finished run's checkpoints deleted, its metrics and logs kept.
- `config.load_mm_config(path, overrides)`: an mmengine Config with typed key=value overrides
  (`transfer.overrides`); `config.read_yaml_config(path)` the YAML configs with `_base_`.
- `devices.adapt_to_devices(cfg, gpus)`: SyncBN -> BN on one process, keep the protocol's total
  batch on fewer GPUs (or scale lr and schedule), notes.
- `schedule.shorten_schedule(cfg, max_iters)`: scale an iteration-based schedule down.
- `launch.relaunch_with_torchrun(gpus)`: re-run this command under torchrun for several GPUs.
- `compat.trust_checkpoints_in(work_dir)`: mmengine loads checkpoints by the project's one trust policy.
- `rng_state.add_rng_state_hook(cfg)`: checkpoints keep the generators' states; a resumed run ends as an
  uninterrupted one.
- `internals`: the only calls into an engine's private API, each tested against the installed version.
- `task.MMEngineAdapter`: the mmengine adapter: config edits, devices, schedule, train + test.
"""
