"""The two generators of SelfDeblur: a skip U-Net for the latent image and an MLP for the kernel.

On CUDA, reflection padding and bilinear x2 upsampling use plain tensor operations (slicing,
concatenation, a fixed transposed convolution) instead of ``F.pad(mode="reflect")`` and
``F.interpolate``: the results are the same, but the built-ins' backward passes use atomic adds on
CUDA and are not deterministic. Elsewhere the (faster) built-ins are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageNetConfig, KernelNetConfig


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection padding of the last two axes by ``pad`` pixels (like ``ReflectionPad2d``)."""
    if pad == 0:
        return x
    if not x.is_cuda:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return reflect_pad_deterministic(x, pad)


def reflect_pad_deterministic(x: torch.Tensor, pad: int) -> torch.Tensor:
    """:func:`reflect_pad` by slicing and concatenation (deterministic backward on CUDA)."""
    top = x[..., 1 : pad + 1, :].flip(-2)
    bottom = x[..., -pad - 1 : -1, :].flip(-2)
    x = torch.cat([top, x, bottom], dim=-2)
    left = x[..., :, 1 : pad + 1].flip(-1)
    right = x[..., :, -pad - 1 : -1].flip(-1)
    return torch.cat([left, x, right], dim=-1)


def upsample2x_bilinear(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of (N, C, H, W), as ``F.interpolate(align_corners=False)``."""
    if not x.is_cuda:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return upsample2x_bilinear_deterministic(x)


def upsample2x_bilinear_deterministic(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling with separable taps (1/4, 3/4, 3/4, 1/4) by transposed convolution."""
    _, c, h, w = x.shape
    taps = x.new_tensor([0.25, 0.75, 0.75, 0.25])
    # Replicate-pad by one pixel, transposed-convolve with stride 2, drop the 3-pixel margins.
    xp = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    xp = torch.cat([xp[..., :1], xp, xp[..., -1:]], dim=-1)
    wy = taps.view(1, 1, 4, 1).expand(c, 1, 4, 1)
    wx = taps.view(1, 1, 1, 4).expand(c, 1, 1, 4)
    y = F.conv_transpose2d(xp, wy, stride=(2, 1), groups=c)[..., 3 : 3 + 2 * h, :]
    y = F.conv_transpose2d(y, wx, stride=(1, 2), groups=c)[..., 3 : 3 + 2 * w]
    return y


class ConvBlock(nn.Module):
    """Reflection pad, convolution, BatchNorm, LeakyReLU."""

    def __init__(self, cin: int, cout: int, size: int, stride: int = 1, slope: float = 0.2):
        super().__init__()
        self.pad = size // 2
        self.conv = nn.Conv2d(cin, cout, size, stride=stride)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution, BatchNorm and LeakyReLU of ``x``."""
        return self.act(self.bn(self.conv(reflect_pad(x, self.pad))))


class NonLocalBlock(nn.Module):
    """Dot-product non-local block (Wang et al. 2018) with 2x2 max-pool subsampling.

    The output projection's BatchNorm starts at zero, so the block starts as the identity.
    """

    def __init__(self, channels: int, inter: int):
        super().__init__()
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus its dot-product non-local response."""
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (n, hw, inter)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (n, inter, hw/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2).transpose(1, 2)  # (n, hw/4, inter)
        attn = torch.bmm(theta, phi) / phi.shape[-1]
        y = torch.bmm(attn, g).transpose(1, 2).reshape(n, -1, h, w)
        return x + self.out(y)


def _center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dy, dx = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., dy : dy + h, dx : dx + w]


class _Level(nn.Module):
    """One U-Net level: a skip branch and a deep branch (down, [non-local], conv, deeper, up)."""

    def __init__(self, cfg: ImageNetConfig, i: int, cin: int):
        super().__init__()
        s, down, slope = cfg.channels_skip[i], cfg.channels_down[i], cfg.negative_slope
        self.skip = ConvBlock(cin, s, 1, slope=slope) if s > 0 else None
        layers: list[nn.Module] = [ConvBlock(cin, down, 3, stride=2, slope=slope)]
        if i in cfg.nonlocal_levels:
            layers.append(NonLocalBlock(down, cfg.nonlocal_inter_channels))
        layers.append(ConvBlock(down, down, 3, slope=slope))
        self.down = nn.Sequential(*layers)
        last = i == cfg.depth - 1
        self.deeper = None if last else _Level(cfg, i + 1, down)
        deep_out = down if last else cfg.channels_up[i + 1]
        up = cfg.channels_up[i]
        self.merge_bn = nn.BatchNorm2d(s + deep_out)
        self.merge = nn.Sequential(
            ConvBlock(s + deep_out, up, 3, slope=slope), ConvBlock(up, up, 1, slope=slope)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = upsample2x_bilinear(d)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[-2], d.shape[-2]), min(s.shape[-1], d.shape[-1])
            d = torch.cat([_center_crop(s, h, w), _center_crop(d, h, w)], dim=1)
        return self.merge(self.merge_bn(d))


class ImageGenerator(nn.Module):
    """Gx: skip U-Net mapping noise (N, input_channels, H, W) to an image in (0, 1)."""

    def __init__(self, cfg: ImageNetConfig, out_channels: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.body = _Level(cfg, 0, cfg.input_channels)
        self.head = nn.Conv2d(cfg.channels_up[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The latent image (1, 1, H + kh - 1, W + kw - 1) in (0, 1) for input ``z``."""
        return torch.sigmoid(self.head(self.body(z)))


class KernelGenerator(nn.Module):
    """Gk: fixed noise -> hidden (ReLU6) -> kh*kw logits -> SoftMax, reshaped to (kh, kw).

    SoftMax makes the kernel non-negative with unit sum.
    """

    def __init__(self, cfg: KernelNetConfig, kernel_shape: tuple[int, int]):
        super().__init__()
        self.kernel_shape = kernel_shape
        self.net = nn.Sequential(
            nn.Linear(cfg.input_size, cfg.hidden_size),
            nn.ReLU6(),
            nn.Linear(cfg.hidden_size, kernel_shape[0] * kernel_shape[1]),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The kernel (kh, kw): non-negative with unit sum, for input ``z``."""
        return torch.softmax(self.net(z), dim=-1).reshape(self.kernel_shape)


def min_image_size(cfg: ImageNetConfig) -> int:
    """Smallest latent side for which every level of the U-Net has at least 2 pixels."""
    n = 2
    for _ in range(cfg.depth):
        n = 2 * n - 1  # ceil(n' / 2) >= n  <=>  n' >= 2n - 1
    return n
