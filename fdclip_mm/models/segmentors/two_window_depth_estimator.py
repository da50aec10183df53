"""mmseg's DepthEstimator with the two-window test of the MIM / FD NYUv2 recipe."""
from typing import List, Sequence, Tuple

import torch
from mmengine.config import ConfigDict
from mmseg.models.segmentors import DepthEstimator

from fdclip_mm.registry import MODELS
from ..builder import scoped

TEST_MODES = ('whole', 'slide', 'slide_flip', 'two_window')


def window_starts(size: int, window: int) -> List[int]:
    """Offsets of the windows along one axis: both ends when the image is longer than one window.

    Args:
        size: Image length along the axis.
        window: Window length.

    Returns:
        ``[0]`` when one window covers the axis (the window is then cut to ``size``), else
        ``[0, size - window]``.
    """
    if size <= window:
        return [0]
    if size > 2 * window:
        raise ValueError(f'two windows of {window} pixels cannot cover an image side of {size} pixels; '
                         'enlarge test_cfg.crop_size or resize the test images')
    return [0, size - window]


@MODELS.register_module()
class TwoWindowDepthEstimator(DepthEstimator):
    """``DepthEstimator`` whose test mode ``'two_window'`` averages windows at both ends of the image.

    As the test of the MIM depth code (SwinTransformer/MIM-Depth-Estimation, ``test.py``,
    ``--shift_window_test --shift_size 2 --flip_test``) that FD's appendix H follows: a 640 x 480 NYU frame is
    predicted in two 480 x 480 windows, at its left and right ends, and the predictions are averaged where the
    windows overlap (columns 160-479); each window is also predicted flipped and the two are averaged when
    ``test_cfg.flip`` is true. In general, along each axis longer than ``crop_size`` a window sits at either
    end (up to 2 x 2 windows); an axis no longer than the window gets one window of the image's length, so a
    square or small image is predicted whole. All windows (and flips) of a batch run as one forward pass.

    ``test_cfg``: ``mode`` = ``'two_window'`` (with ``crop_size=(h, w)`` and optional ``flip``), or mmseg's
    ``'whole'``, ``'slide'`` (``crop_size``, ``stride``) and ``'slide_flip'``. (mmseg 1.2.2's own
    ``DepthEstimator.inference`` runs ``'whole'`` when asked for ``'slide'``; here each mode runs as named.)

    Sub-module configs without a scope are built in mmseg's scope, whatever the caller's default scope.
    """

    def __init__(self, *args, test_cfg=None, **kwargs) -> None:
        for key in ('backbone', 'neck', 'decode_head', 'auxiliary_head', 'data_preprocessor'):
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = scoped(kwargs[key], 'mmseg')
        # mmseg reads test_cfg keys as attributes
        test_cfg = ConfigDict(test_cfg) if test_cfg is not None else None
        super().__init__(*args, test_cfg=test_cfg, **kwargs)
        mode = (test_cfg or {}).get('mode', 'whole')
        if mode not in TEST_MODES:
            raise ValueError(f'test_cfg.mode must be one of {TEST_MODES}, got {mode!r}')
        if mode != 'whole' and 'crop_size' not in test_cfg:
            raise ValueError(f'test_cfg.mode {mode!r} needs test_cfg.crop_size')

    def inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Depth (B, 1, H, W) of a batch by the test mode of ``test_cfg``."""
        mode = self.test_cfg.get('mode', 'whole')
        if mode == 'two_window':
            return self.two_window_inference(inputs, batch_img_metas)
        if mode == 'slide':
            return self.slide_inference(inputs, batch_img_metas)
        if mode == 'slide_flip':
            return self.slide_flip_inference(inputs, batch_img_metas)
        return self.whole_inference(inputs, batch_img_metas)

    def window_boxes(self, height: int, width: int) -> Tuple[List[Tuple[int, int]], Tuple[int, int]]:
        """Top-left corners of the windows of an image and the window size."""
        crop_h, crop_w = self.test_cfg['crop_size']
        boxes = [(y, x) for y in window_starts(height, crop_h) for x in window_starts(width, crop_w)]
        return boxes, (min(crop_h, height), min(crop_w, width))

    def two_window_inference(self, inputs: torch.Tensor, batch_img_metas: Sequence[dict]) -> torch.Tensor:
        """Averages the depth predicted in the windows (and their flips) over the pixels they cover."""
        batch, _, height, width = inputs.shape
        boxes, (h, w) = self.window_boxes(height, width)
        crops = torch.cat([inputs[:, :, y:y + h, x:x + w] for y, x in boxes])
        flip = bool(self.test_cfg.get('flip', False))
        if flip:
            crops = torch.cat([crops, crops.flip(dims=(3, ))])
        crop_metas = [dict(meta, img_shape=torch.Size((h, w)), pad_shape=(h, w)) for meta in batch_img_metas]
        preds = self.encode_decode(crops, crop_metas * (crops.shape[0] // batch))
        if flip:
            half = preds.shape[0] // 2
            preds = (preds[:half] + preds[half:].flip(dims=(3, ))) / 2

        depth = inputs.new_zeros((batch, preds.shape[1], height, width))
        count = inputs.new_zeros((batch, 1, height, width))
        for i, (y, x) in enumerate(boxes):
            depth[:, :, y:y + h, x:x + w] += preds[i * batch:(i + 1) * batch]
            count[:, :, y:y + h, x:x + w] += 1
        return depth / count


__all__ = ['TwoWindowDepthEstimator', 'window_starts']
