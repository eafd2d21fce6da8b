# PASCAL VOC 2012 + SBD aug semantic segmentation (mmselfsup's benchmark, mmseg's
# fcn_r50-d8_4xb4-20k_voc12aug-512x512): FCN R50-D8, 21 classes (20 + background),
# 512x512 crops of images rescaled around (2048, 512) x 0.5-2.0, 20k iterations at a
# total batch of 16 (4 GPUs x 4 images), SGD lr 0.01 with poly decay, whole-image
# inference, align_corners=False (mmseg's; Cityscapes' 769 crops set it True).
# mmseg's own bases with the standard-stem ResNet
# (`_base_/fcn_r50-d8_standard-stem.py`). Trains on the ConcatDataset of
# `train.txt` (SegmentationClass) and `aug.txt` (SegmentationClassAug, from SBD by
# mmseg's tools/dataset_converters/voc_aug.py), tests on `val.txt`. The runner sets
# `data_root` (the VOC2012 folder) from --data; --input-size S scales every size by S/512.
_base_ = [
    './_base_/fcn_r50-d8_standard-stem.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
protocol_gpus = 4
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
train_dataloader = dict(batch_size=4)
val_evaluator = dict(type='PerClassIoUMetric')
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2))
