# mmseg's FCN R50-D8 as the MoCo/DenseCL/mmselfsup transfer protocols run it: what
# the Cityscapes and VOC12aug configs share. Changed from mmseg's base: the
# standard-stem `ResNet` (one 7x7 conv1), not mmseg's `ResNetV1c` (a deep stem of
# three 3x3 convs): self-supervised ResNets have the standard stem, and their
# converted weights would leave a deep stem randomly initialised; no ImageNet
# checkpoint (the runner points `backbone.init_cfg` at --weights).
# Kept from it: SyncBN, norm_eval=False, the torchvision RGB mean/std, FCNHead
# 2048->512 with 2 convs and concat_input, auxiliary FCNHead with loss weight 0.4.
_base_ = ['mmseg::_base_/models/fcn_r50-d8.py', 'mmseg::_base_/default_runtime.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,  # nothing of ResNetV1c's settings carries over
        type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1), norm_cfg=norm_cfg, norm_eval=False, style='pytorch', contract_dilation=True,
        init_cfg=None))

# mmseg's IoUMetric, also returning unrounded per-class IoU (the configs' evaluator).
custom_imports = dict(imports=['transfer.segmentation.metric'], allow_failed_imports=False)
# no fixed `name`: mmengine then names it after the run, so a second run in the same
# process (resume, trials, the demo) logs into its own folder, not the first run's
visualizer = dict(_delete_=True, type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
