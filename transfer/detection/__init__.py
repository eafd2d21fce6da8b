"""Detection transfer: VOC07+12 Faster R-CNN C4, COCO Mask R-CNN (C4, FPN) on mmdet or detectron2, and Cityscapes
instance segmentation with Mask R-CNN FPN on mmdet.

`runner.run(args)` is `tools/run_transfer.sh voc|coco|cityscapes_ins`. The engines are imported
lazily, by the backend that runs: detectron2 is optional.
"""
