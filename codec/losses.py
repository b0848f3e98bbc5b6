"""Training losses of the tokenizer (MAGVIT-v2, section 3 and appendix).

- reconstruction: L1 + L2 on pixels, plus 1 - SSIM per frame as the
  structural term (no pretrained perceptual network is available offline);
- the LFQ commitment and entropy terms come from `lfq.LFQ` itself;
- adversarial: a 3D convolutional discriminator whose downsampling is
  blur-pooled (anti-aliased), trained with the hinge loss and LeCam
  regularisation, switched on after a warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM of two videos (B, C, T, H, W), computed per frame with an 11x11 Gaussian."""
    x = a.transpose(1, 2).flatten(0, 1)
    y = b.transpose(1, 2).flatten(0, 1)
    c = x.shape[1]
    g = _gaussian_window().to(x)
    size = min(11, x.shape[-1], x.shape[-2])
    g = g[(11 - size) // 2 : (11 - size) // 2 + size]
    g = g / g.sum()
    wx, wy = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean()


# BT.601 luma weights: the Y' that PSNR-Y, MS-SSIM and VMAF are measured on (bench/metrics.py)
LUMA = (0.299, 0.587, 0.114)


def luma(video: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (B, 1, T, H, W) of RGB videos (B, 3, T, H, W), in their range."""
    w = video.new_tensor(LUMA).view(1, 3, 1, 1, 1)
    return (video * w).sum(1, keepdim=True)


# Side of the blocks the low-pass term averages over: it keeps spatial periods above
# ~16 pixels, the band (below 1/8 of Nyquist) where fine-tuned decoders lost realshort's
# PSNR-Y (bench/RESULTS.md, twenty-first session).
LOWPASS_BLOCK = 8


def lowpass(video: torch.Tensor) -> torch.Tensor:
    """Videos (B, C, T, H, W) averaged over LOWPASS_BLOCK-pixel squares (partial edge blocks dropped)."""
    return F.avg_pool3d(video, (1, LOWPASS_BLOCK, LOWPASS_BLOCK))


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, l1: float = 1.0, l2: float = 1.0, ssim_weight: float = 0.2,
    luma_weight: float = 0.0, lowpass_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted L1 + L2 + (1 - SSIM) (+ L1 of the low-pass images), and its parts for logging.

    A `luma_weight` share of each term is taken on luma alone and the rest
    on RGB: the quality metrics users compare codecs by see luma only. (A
    decoder fine-tune with 0.8 was a draw against RGB's: bench/RESULTS.md.)
    `lowpass_weight` adds the L1 distance of the two videos averaged over
    8x8 blocks: per-pixel L1 and SSIM let a decoder flatten large-scale
    contrast cheaply, and this term prices it again. (A decoder fine-tune
    with 2 was no better than its control: bench/RESULTS.md.)
    """

    def terms(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (a - b).abs().mean(), F.mse_loss(a, b), ssim(a, b) if ssim_weight else a.new_ones(())

    e1, e2, s = terms(recon, target)
    if luma_weight:
        y1, y2, ys = terms(luma(recon), luma(target))
        e1, e2, s = (torch.lerp(rgb, y, luma_weight) for rgb, y in ((e1, y1), (e2, y2), (s, ys)))
    loss = l1 * e1 + l2 * e2 + ssim_weight * (1 - s)
    parts = {"l1": e1.item(), "l2": e2.item(), "ssim": s.item()}
    if lowpass_weight:
        low = (lowpass(recon) - lowpass(target)).abs().mean()
        loss = loss + lowpass_weight * low
        parts["lowpass"] = low.item()
    return loss, parts


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(recon.clamp(-1, 1), target).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


class BlurPool3d(nn.Module):
    """Anti-aliased spatial downsampling by 2: a [1, 2, 1] binomial blur, then stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k2 = (k[:, None] * k[None, :]) / 16
        self.register_buffer("kernel", k2.view(1, 1, 1, 3, 3).repeat(channels, 1, 1, 1, 1))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1, 0, 0), mode="replicate")
        return F.conv3d(x, self.kernel, stride=(1, 2, 2), groups=self.channels)


class Discriminator3d(nn.Module):
    """A small 3D CNN discriminator (StyleGAN-like residual blocks, blur-pooled).

    Each stage: two 3x3x3 convolutions with leaky ReLU, then a blur pool; a
    final linear layer scores each clip. Works on any clip length >= 1.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 128)) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, channels[0], 3, padding=1)
        stages = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            stages.append(
                nn.Sequential(
                    nn.Conv3d(cin, cin, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    nn.Conv3d(cin, cout, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    BlurPool3d(cout),
                )
            )
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels[-1], 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.stages(F.leaky_relu(self.stem(video), 0.2))
        return self.head(h.mean(dim=(2, 3, 4))).squeeze(-1)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def generator_adv_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


class LeCam(nn.Module):
    """LeCam regularisation (Tseng et al. 2021): keeps discriminator outputs
    near EMA anchors of the opposite class, which stabilises GANs on little data."""

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("real_ema", torch.zeros(()))
        self.register_buffer("fake_ema", torch.zeros(()))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.real_ema.mul_(self.decay).add_((1 - self.decay) * real.mean())
            self.fake_ema.mul_(self.decay).add_((1 - self.decay) * fake.mean())
        return F.relu(real - self.fake_ema).pow(2).mean() + F.relu(self.real_ema - fake).pow(2).mean()
