"""Fake quantization for training, with exactly the numerics of ``compiler.numerics``.

``fake_quantize(x, scale, zp, dtype)`` computes ``dequantize(quantize(x))`` the way
``compiler.numerics`` defines it (``x / scale`` in float32, round half to even, add the zero
point, saturate, then ``(q - zp) * scale`` in float32) and passes the gradient straight through
inside the representable range (the straight-through estimator; zero gradient where it
saturates).

``FakeQuant`` applies it to the conv / dense weights of a ``compiler.torchside.module`` module with
the scales the quantize pass will choose (``passes.quant.weights.weight_scales``: symmetric,
per output channel, optionally powers of two), recomputed from the current weights on every
forward. So after training, the float weights written back into the graph and quantized by the
quantize pass give exactly the integers (times scales) that the student computed with: what
was trained is what runs. torch is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compiler.numerics import int_range

if TYPE_CHECKING:
    import torch

#: The axis of a conv / dense weight that per-channel scales run along (output channels).
WEIGHT_AXIS = 0


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor | float, zero_point: int, dtype: str
) -> torch.Tensor:
    """``dequantize(quantize(x))`` in float32 with a straight-through gradient."""
    import torch

    lo, hi = int_range(dtype)
    scale_t = torch.as_tensor(scale, dtype=torch.float32)
    q = torch.clamp(torch.round(x / scale_t) + zero_point, lo, hi)
    y = (q - zero_point) * scale_t
    inside = torch.clamp(x, (lo - zero_point) * scale_t, (hi - zero_point) * scale_t)
    return inside + (y - inside).detach()


def weight_scales(weight: np.ndarray, dtype: str, power_of_two: bool, per_channel: bool,
                  name: str = "weight") -> np.ndarray:  # fmt: skip
    """The scales the quantize pass gives ``weight`` (its own function when available)."""
    from passes.quant.weights import weight_scales as pass_scales

    return pass_scales(weight, WEIGHT_AXIS if per_channel else None, dtype, power_of_two, name)


@dataclass(frozen=True)
class FakeQuant:
    """Fake-quantize weights as the quantize pass will: ``FakeQuant(power_of_two=True)``."""

    dtype: str = "i8"
    power_of_two: bool = False
    per_channel: bool = True

    def scales(self, weight: torch.Tensor, name: str = "weight") -> torch.Tensor:
        """The scales for ``weight``, shaped to broadcast against it."""
        import torch

        data = weight.detach().cpu().numpy().astype(np.float32)
        scales = weight_scales(data, self.dtype, self.power_of_two, self.per_channel, name)
        shape = (-1,) + (1,) * (weight.dim() - 1) if self.per_channel else ()
        return torch.from_numpy(scales).reshape(shape)

    def weight(self, weight: torch.Tensor, name: str = "weight") -> torch.Tensor:
        """``weight`` fake-quantized with its current scales."""
        return fake_quantize(weight, self.scales(weight, name), 0, self.dtype)
