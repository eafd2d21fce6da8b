"""Detection transfer: VOC07+12 Faster R-CNN C4 and COCO Mask R-CNN (C4, FPN) on mmdet or detectron2.

`runner.run(args)` is `tools/run_transfer.sh voc|coco`. The engines are imported
lazily, by the backend that runs: detectron2 is optional.
"""
