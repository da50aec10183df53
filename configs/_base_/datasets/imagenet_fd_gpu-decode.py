# ImageNet-1K for feature distillation with the JPEGs decoded on the GPU: the loader's workers read each file and
# draw its crop and flip from the header (mmpretrain's RandomResizedCrop and mmcv's RandomFlip draws, as in
# imagenet_fd.py) and send the bytes; the distiller's data preprocessor decodes the batch with nvJPEG
# (torchvision.io.decode_jpeg) and crops, resizes, flips and normalises it on the GPU. For CUDA runs whose CPU
# workers cannot keep up: an FD config switches to it by naming this file instead of imagenet_fd.py in its _base_
# (docs/en/advanced_guides/data_loading.md). Files that are not JPEGs are decoded and cropped by the workers.
_base_ = './imagenet_fd.py'

train_pipeline = [
    dict(
        type='fdclip_mm.DecodeRandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        interpolation='bilinear',
        flip_prob=0.5,
        decode_on='device',
    ),
    dict(type='PackInputs'),
]
# A worker only reads files and headers here (~6,000 images/s on one core, benchmarks/README.md): 2 workers feed
# the ~5,000 images/s of an H100's FD step; 4 batches prefetched each keep ~0.2 s of steps queued. The files
# differ in length: the batch is a list, not a stack.
train_dataloader = dict(
    num_workers=2, prefetch_factor=4, collate_fn=dict(type='pseudo_collate'), dataset=dict(pipeline=train_pipeline))
