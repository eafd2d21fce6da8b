# DenseCL's Cityscapes protocol: FCN R50-D8, 769x769 crops, 40k iterations at a
# total batch of 8 (4 GPUs x 2 images), SyncBN, slide inference 769/513,
# auxiliary head 0.4, align_corners. Fewer GPUs keep the total batch of 8
# (`protocol_gpus` tells the runner what the per-GPU batch is for).
_base_ = [
    '_base_/models/fcn_r50-d8.py',
    '_base_/datasets/cityscapes_769x769.py',
    '_base_/schedules/schedule_40k.py',
]
protocol_gpus = 4
crop_size = (769, 769)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(513, 513)))
train_dataloader = dict(batch_size=2)
