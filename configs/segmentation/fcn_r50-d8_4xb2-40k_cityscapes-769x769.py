# DenseCL's Cityscapes protocol: FCN R50-D8, 769x769 crops of images rescaled
# around (2049, 1025) x 0.5-2.0, 40k iterations at a total batch of 8 (4 GPUs x 2
# images), SGD lr 0.01 with poly decay, align_corners, slide inference 769/513.
# mmseg's own bases with the standard-stem ResNet (`_base_/fcn_r50-d8_standard-stem.py`).
# Fewer GPUs keep the total batch of 8 (`protocol_gpus` tells the runner what the
# per-GPU batch is for). mmseg's CityscapesDataset reads `*_gtFine_labelTrainIds.png`
# (make them with tools/prepare_cityscapes.py); the runner sets `data_root` from
# --data, and --input-size S scales every size here (and the slide window) by S/769.
_base_ = [
    './_base_/fcn_r50-d8_standard-stem.py',
    'mmseg::_base_/datasets/cityscapes_769x769.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
protocol_gpus = 4
crop_size = (769, 769)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(align_corners=True),
    auxiliary_head=dict(align_corners=True),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(513, 513)))
train_dataloader = dict(batch_size=2)
val_evaluator = dict(type='PerClassIoUMetric')
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2))
