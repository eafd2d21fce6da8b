# Cityscapes instance segmentation: Mask R-CNN R50-FPN, 24k iterations (MoCo's Cityscapes protocol, run on
# detectron2's configs/Cityscapes/mask_rcnn_R_50_FPN.yaml with MoCo's BN choices).
# The model is our COCO FPN protocol's (SyncBN in the backbone, trained, FREEZE_AT 0; SyncBN in the FPN, the
# 4conv+1fc box head and the mask head; RGB torchvision-style ResNet; precise BN), with the 8 Cityscapes classes
# that have instances. What the Cityscapes protocol changes:
# - data: train on gtFine train (2975 images), test on val (500), from the COCO-style instance annotations that
#   mmdet's converter makes (`tools/prepare_cityscapes.py DATA --instances`);
# - sizes: shorter side 800..1024 (step 32, one picked per image) for training, 1024 for testing, long side
#   at most 2048 (MIN_SIZE_TRAIN, MIN_SIZE_TEST, MAX_SIZE_TRAIN/TEST, the Mask R-CNN paper's Appendix A);
# - schedule: total batch 8 (1 image x 8 GPUs), lr 0.01, 24k iterations, x0.1 at 18k (IMS_PER_BATCH, BASE_LR,
#   MAX_ITER, STEPS); detectron2's warmup (1000 iterations) and weight decay 1e-4 as in our schedule. detectron2
#   also evaluates every 8k iterations (TEST.EVAL_PERIOD): the reported number is the final one, tested here;
# - evaluation: COCO-style box and mask AP on val, and the official Cityscapes instance AP / AP50 (what
#   detectron2's CityscapesInstanceEvaluator reports, and MoCo's table) through cityscapesscripts.
_base_ = ['./mask-rcnn_r50-fpn-syncbn_1x_coco.py']

custom_imports = dict(  # our schedule's modules and the Cityscapes metric (a list is replaced, not merged)
    imports=['transfer.detection.mmdet_shared_head', 'transfer.detection.mmdet_voc_metric',
             'transfer.detection.mmdet_coco_metric', 'transfer.detection.mmdet_precise_bn',
             'transfer.detection.mmdet_cityscapes_metric'],
    allow_failed_imports=False)

num_classes = 8  # person, rider, car, truck, bus, train, motorcycle, bicycle
model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes), mask_head=dict(num_classes=num_classes)))

dataset_type = 'CityscapesDataset'
data_root = 'data/cityscapes/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(2048, s) for s in range(800, 1025, 32)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
protocol_gpus = 8
train_dataloader = dict(
    batch_size=1,  # per GPU: IMS_PER_BATCH 8
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instancesonly_filtered_gtFine_train.json',
                 data_prefix=dict(img='leftImg8bit/train/'), pipeline=train_pipeline))
test_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/instancesonly_filtered_gtFine_val.json',
                 data_prefix=dict(img='leftImg8bit/val/'), pipeline=test_pipeline))
test_evaluator = [
    dict(type='CocoAPMetric', ann_file=data_root + 'annotations/instancesonly_filtered_gtFine_val.json',
         metric=['bbox', 'segm'], evaluator='faster-coco-eval'),
    # reads the *_gtFine_instanceIds.png maps beside each val image; the runner puts outfile_prefix (its PNG
    # masks and lists, removed after the evaluation) in the work dir
    dict(type='CityscapesAPMetric', seg_prefix=data_root + 'gtFine/val',
         outfile_prefix='work_dirs/cityscapes_ins/cityscapes_eval'),
]

optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=8)
max_iters = 24000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[18000], gamma=0.1),
]
