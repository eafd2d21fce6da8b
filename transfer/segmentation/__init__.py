"""Semantic segmentation transfer: FCN with mmsegmentation on Cityscapes (DenseCL's protocol), VOC12aug (mmselfsup's).

- `runner.run(args)`: tools/run_transfer.sh cityscapes|voc12aug -- fine-tune, evaluate, write metrics.json.
- `config`: fit the protocol config to a run (data root, backbone depth and weights, --input-size).
- `metric.PerClassIoUMetric`: mmseg's IoUMetric returning per-class IoU, exactly summed.
- `evaluation`: the official Cityscapes evaluation script, to hold mmseg's numbers against.
- `prepare`: `*_gtFine_labelTrainIds.png` from `*_gtFine_labelIds.png` for a real Cityscapes tree.
"""
