"""Hugging Face DINOv2 -> mmpretrain ``VisionTransformer`` (``arch='dinov2-s'`` etc.): fine-tuning the teacher.

mmpretrain's ``VisionTransformer`` with a ``dinov2-*`` arch and ``layer_scale_init_value > 0`` is DINOv2's
tower (LayerNorm eps 1e-6, GELU, q/k/v biases, layer scale); it brings drop path, ``out_type='avg_featmap'``
and ``get_layer_depth``. Only the key map is missing; it is here. Per block ``i``::

    embeddings.cls_token / position_embeddings / patch_embeddings.projection.*
                                           -> cls_token / pos_embed / patch_embed.projection.*
    encoder.layer.i.norm1.*                -> layers.i.ln1.*
    ...attention.attention.{query,key,value}.{weight,bias} -> layers.i.attn.qkv.* (concatenated q, k, v)
    ...attention.output.dense.*            -> layers.i.attn.proj.*
    ...layer_scale1.lambda1                -> layers.i.attn.gamma1.weight
    ...norm2.*                             -> layers.i.ln2.*
    ...mlp.fc1.* / mlp.fc2.*               -> layers.i.ffn.layers.0.0.* / ffn.layers.1.*
    ...layer_scale2.lambda1                -> layers.i.ffn.gamma2.weight
    layernorm.*                            -> ln1.* (only for final_norm=True)
    embeddings.mask_token                  -> dropped

The position embeddings are resized to ``grid`` (bicubic, as the teacher does).
"""
import math
import re
from typing import Dict, Tuple

import torch
from mmpretrain.models.utils import resize_pos_embed

from .to_classifier import add_head_norm

Tensors = Dict[str, torch.Tensor]

_BLOCK_RE = re.compile(r'^encoder\.layer\.(\d+)\.(.+)$')
BLOCK_MAP = {
    'norm1.': 'ln1.',
    'attention.output.dense.': 'attn.proj.',
    'layer_scale1.lambda1': 'attn.gamma1.weight',
    'norm2.': 'ln2.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
    'layer_scale2.lambda1': 'ffn.gamma2.weight',
}
QKV = ('query', 'key', 'value')


def native_grid(dinov2: Tensors) -> Tuple[int, int]:
    """The square patch grid the position embeddings of ``dinov2`` (Hugging Face names) were trained for."""
    side = math.isqrt(dinov2['embeddings.position_embeddings'].shape[1] - 1)
    return side, side


def dinov2_to_vit_state_dict(dinov2: Tensors,
                             grid: Tuple[int, int],
                             final_norm: bool = False,
                             head_norm: bool = True) -> Tensors:
    """mmpretrain ``VisionTransformer`` tensors (float32) from DINOv2 weights in Hugging Face names.

    Args:
        dinov2: ``Dinov2Model`` tensors (see :func:`fdclip_mm.converters.dinov2_weights.load_dinov2_checkpoint`).
        grid: Patch grid of the backbone's ``img_size``; the position embeddings are resized to it.
        final_norm: Map ``layernorm`` to ``ln1``; otherwise drop it (the classifier pools into ``ln2``).
        head_norm: Add a fresh ``ln2`` (``out_type='avg_featmap'``).

    Raises:
        KeyError: A tensor has no counterpart, or a block lacks one of q, k, v.
    """
    out: Tensors = {}
    qkv: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for key, value in dinov2.items():
        value = value.float()
        if key == 'embeddings.mask_token':
            continue
        if key == 'embeddings.cls_token':
            out['cls_token'] = value
        elif key == 'embeddings.position_embeddings':
            native = math.isqrt(value.shape[1] - 1)
            out['pos_embed'] = resize_pos_embed(
                value, (native, native), tuple(grid), mode='bicubic', num_extra_tokens=1)
        elif key.startswith('embeddings.patch_embeddings.projection.'):
            out['patch_embed.projection.' + key.rsplit('.', 1)[1]] = value
        elif key.startswith('layernorm.'):
            if final_norm:
                out['ln1.' + key[len('layernorm.'):]] = value
        else:
            match = _BLOCK_RE.match(key)
            rest = match.group(2) if match else ''
            attention = re.match(r'attention\.attention\.(query|key|value)\.(weight|bias)$', rest)
            if match and attention:
                qkv.setdefault((match.group(1), attention.group(2)), {})[attention.group(1)] = value
                continue
            old = next((o for o in BLOCK_MAP if match and rest.startswith(o)), None)
            if old is None:
                raise KeyError(f'no mmpretrain VisionTransformer counterpart for DINOv2 tensor {key!r}')
            out[f'layers.{match.group(1)}.' + BLOCK_MAP[old] + rest[len(old):]] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != set(QKV):
            raise KeyError(f'DINOv2 block {layer} lacks attention {kind} of {sorted(set(QKV) - set(parts))}')
        out[f'layers.{layer}.attn.qkv.{kind}'] = torch.cat([parts[name] for name in QKV])
    return add_head_norm(out) if head_norm else out
