"""What every frozen teacher shares: no gradients, always eval mode, its own input statistics."""
from abc import ABCMeta, abstractmethod
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule

from fdclip_mm.precision import AUTO, resolve_bf16

_DTYPES = {None: None, 'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


class BaseTeacher(BaseModule, metaclass=ABCMeta):
    """A frozen feature extractor whose target is the last block's tokens after its final norm.

    Subclasses build their network in ``__init__`` (usually from a checkpoint file), set ``embed_dims``
    and ``patch_size``, implement :meth:`forward_tokens` and finally call ``self._freeze()``.

    The teacher never trains: parameters do not require grad, ``train()`` keeps it in eval mode (as
    open_clip's locked towers do) and ``forward`` runs under ``torch.inference_mode``-like no-grad.

    Args:
        mean: Per-channel input mean on the 0-255 scale (RGB).
        std: Per-channel input std on the 0-255 scale (RGB).
        dtype: ``'auto'`` (default): ``'bfloat16'`` where the device runs bf16 natively (CUDA with bf16, a CPU
            with AVX512-BF16 or AMX), None elsewhere (see :mod:`fdclip_mm.precision`; logged once).
            ``'bfloat16'`` / ``'float16'`` hold the weights in that type and run without autocast (saves
            the per-step weight casts of AMP; an explicit ``'bfloat16'`` warns on a CPU without native
            bf16); ``'float32'`` holds and runs fp32 even under autocast; None keeps fp32 weights and
            follows the caller's autocast.
        init_cfg: mmengine init config (teachers load their weights themselves, so usually None).
    """

    embed_dims: int
    patch_size: int

    def __init__(self,
                 mean: Sequence[float],
                 std: Sequence[float],
                 dtype: Optional[str] = AUTO,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if dtype not in _DTYPES and dtype != AUTO:
            raise ValueError(f'teacher dtype must be one of {[AUTO, *_DTYPES]}, got {dtype!r}')
        dtype = resolve_bf16(dtype, 'teacher dtype')
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.compute_dtype = _DTYPES[dtype]

    def _freeze(self) -> None:
        """Call at the end of a subclass's ``__init__``."""
        if self.compute_dtype is not None:
            self.to(self.compute_dtype)
        for param in self.parameters():
            param.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> 'BaseTeacher':
        """Stays in eval mode whatever ``mode`` asks: a teacher has no training behaviour."""
        return super().train(False)

    def init_weights(self) -> None:
        """Weights come from the teacher's checkpoint at build time; the Runner must not re-initialise them."""

    @abstractmethod
    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1+N, C) of the last block after the final norm for a normalised image batch."""

    @abstractmethod
    def patch_grid(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        """Patch grid (h, w) the teacher produces for an input of ``img_size`` (h, w)."""

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Target tokens (float32) for ``x`` normalised with this teacher's ``mean``/``std``."""
        if self.compute_dtype is None:
            return self.forward_tokens(x).float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.forward_tokens(x.to(self.compute_dtype)).float()
