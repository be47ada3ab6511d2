"""Shunted Transformer in an export-friendly, channels-first formulation.

Every activation is a (B, C, H, W) image: linear layers are 1x1 convolutions, layer norms
normalise over the channel axis, and attention splits heads with reshapes to
(B, heads, head_dim, tokens), so no tensor ever exceeds rank 4 and shapes are static.

Shunted self-attention (Ren et al., CVPR 2022): in a stage with spatial-reduction ratio r > 1,
keys/values are aggregated at two scales (an r x r and an r/2 x r/2 strided conv); the first
half of the heads attends to the coarse scale, the second half to the fine one. Each scale
enhances V with a depthwise 3x3 conv. With r = 1 all heads share one K/V projection and the
depthwise conv of V is added to the attention output.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ShuntedConfig:
    """Architecture hyper-parameters of one variant."""

    depths: tuple[int, ...]
    stem_convs: int
    embed_dims: tuple[int, ...] = (64, 128, 256, 512)
    num_heads: tuple[int, ...] = (2, 4, 8, 16)
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    norm_eps: float = 1e-6
    stem_stride: int = 2  # of the 7x7 conv; 1 for small photos (total stride 16 instead of 32)

    @property
    def stem_total_stride(self) -> int:
        """Pixels per stage-1 token side: the 7x7 conv's stride times the 2x2 patch conv's."""
        return 2 * self.stem_stride


VARIANTS: dict[str, ShuntedConfig] = {
    # Published (ImageNet-1k top-1 at 224: 79.8 / 82.9 / 84.0).
    "shunted_t": ShuntedConfig(depths=(1, 2, 4, 1), stem_convs=0),
    "shunted_s": ShuntedConfig(depths=(2, 4, 12, 1), stem_convs=1),
    "shunted_b": ShuntedConfig(depths=(3, 4, 24, 2), stem_convs=2),
    # Edge variants built from the same blocks (head dim 16).
    "shunted_nano": ShuntedConfig(
        depths=(1, 1, 2, 1), stem_convs=0, embed_dims=(32, 64, 128, 256),
        num_heads=(2, 4, 8, 16), mlp_ratios=(4, 4, 4, 4)),
    "shunted_micro": ShuntedConfig(
        depths=(1, 2, 3, 1), stem_convs=0, embed_dims=(48, 96, 192, 384),
        num_heads=(2, 4, 8, 16), mlp_ratios=(6, 6, 4, 4)),
    # nano for small photos (CIFAR-10 at 32 px): a stride-1 7x7 conv gives stage 1 a 16x16 grid at
    # 32 px, the grid nano has at 64 px, at the same MACs and with no upsampling of the input.
    "shunted_nano_s16": ShuntedConfig(
        depths=(1, 1, 2, 1), stem_convs=0, embed_dims=(32, 64, 128, 256),
        num_heads=(2, 4, 8, 16), mlp_ratios=(4, 4, 4, 4), stem_stride=1),
    # nano_s16 with Shunted-T's depths: grown from trained nano_s16 weights by train/deepen.py.
    "shunted_nano_s16_deep": ShuntedConfig(
        depths=(1, 2, 4, 1), stem_convs=0, embed_dims=(32, 64, 128, 256),
        num_heads=(2, 4, 8, 16), mlp_ratios=(4, 4, 4, 4), stem_stride=1),
}

INPUT_MULTIPLE = 32  # total stride of the network
PATCH_NORM_EPS = 1e-5  # the patch-embedding and K/V-aggregation norms use LayerNorm's default eps


def check_input_size(size: int) -> None:
    """Raise ValueError unless ``size`` is a positive multiple of 32, naming the nearest valid sizes."""
    if size >= INPUT_MULTIPLE and size % INPUT_MULTIPLE == 0:
        return
    lower = (size // INPUT_MULTIPLE) * INPUT_MULTIPLE
    nearest = [n for n in (lower, lower + INPUT_MULTIPLE) if n >= INPUT_MULTIPLE]
    raise ValueError(
        f"input size {size} is not supported: it must be a multiple of {INPUT_MULTIPLE} "
        f"(>= {INPUT_MULTIPLE}); nearest valid sizes: {', '.join(map(str, nearest))}")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        normalized = centred * torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + self.eps)
        return normalized * self.weight + self.bias


def pointwise(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    """A linear layer applied to every pixel: 1x1 convolution."""
    return nn.Conv2d(cin, cout, 1, bias=bias)


def depthwise3x3(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels)


class DropPath(nn.Module):
    """Stochastic depth per sample; identity in eval mode and in exported graphs."""

    def __init__(self, prob: float):
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob == 0.0:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
        return x * mask / keep


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(Q^T K) applied to V, heads folded into the batch axis.

    q: (G, d, N) scaled queries, k and v: (G, d, M), G = batch x heads. Returns (G, d, N), the
    layout that reshapes straight back to a (B, C, H, W) image. Softmax runs over the last axis
    (as every backend prefers), and plain 3-D bmm avoids the broadcast copies of 4-D matmul.
    """
    weights = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (G, N, M)
    return torch.bmm(v, weights.transpose(1, 2))


class KVBranch(nn.Module):
    """One aggregation scale: strided conv -> LN -> GELU -> K/V projection, V locally enhanced."""

    def __init__(self, dim: int, kernel: int, kv_dim: int):
        super().__init__()
        self.reduce = nn.Conv2d(dim, dim, kernel, stride=kernel)
        self.norm = LayerNorm2d(dim, PATCH_NORM_EPS)
        self.kv = pointwise(dim, 2 * kv_dim)
        self.local = depthwise3x3(kv_dim)
        self.kv_dim = kv_dim

    def kv_image(self, x: torch.Tensor) -> torch.Tensor:
        """K and V of this scale before the local enhancement, as one (B, 2 x kv_dim, h, w) image."""
        return self.kv(F.gelu(self.norm(self.reduce(x))))

    def forward(self, x: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of this scale as (B * heads, head_dim, tokens)."""
        kv = self.kv_image(x)
        k, v = kv[:, :self.kv_dim], kv[:, self.kv_dim:]
        v = v + self.local(v)
        b, c, h, w = k.shape
        return k.reshape(b * heads, c // heads, h * w), v.reshape(b * heads, c // heads, h * w)


class ShuntedAttention(nn.Module):
    """Shunted self-attention on a (B, C, H, W) image of tokens."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__()
        if sr_ratio > 1 and heads % 2:
            raise ValueError(f"shunted attention with sr_ratio {sr_ratio} needs an even head count, got {heads}")
        self.heads, self.sr_ratio = heads, sr_ratio
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.q = pointwise(dim, dim)
        if sr_ratio > 1:
            self.coarse = KVBranch(dim, sr_ratio, dim // 2)
            self.fine = KVBranch(dim, sr_ratio // 2, dim // 2)
        else:
            self.kv = pointwise(dim, 2 * dim)
            self.local = depthwise3x3(dim)
        self.proj = pointwise(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend_heads(self.q(x) * self.scale, x))

    def attend_heads(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The heads' outputs for the scaled queries ``q`` of ``x``, as one (B, C, H, W) image."""
        b, c, h, w = x.shape
        if self.sr_ratio > 1:  # the first half of the heads attends to the coarse scale, the second to the fine
            half, width = self.heads // 2, c // 2
            k1, v1 = self.coarse(x, half)
            k2, v2 = self.fine(x, half)
            q1 = q[:, :width].reshape(b * half, self.head_dim, h * w)
            q2 = q[:, width:].reshape(b * half, self.head_dim, h * w)
            return torch.cat([attend(q1, k1, v1).reshape(b, width, h, w),
                              attend(q2, k2, v2).reshape(b, width, h, w)], dim=1)
        kv = self.kv(x)
        v = kv[:, c:]
        heads_shape = (b * self.heads, self.head_dim, h * w)
        out = attend(q.reshape(heads_shape), kv[:, :c].reshape(heads_shape), v.reshape(heads_shape))
        return out.reshape(b, c, h, w) + self.local(v)


class ConvMlp(nn.Module):
    """fc1 -> x + depthwise3x3(x) -> GELU -> fc2, all on (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = pointwise(dim, hidden)
        self.dwconv = depthwise3x3(hidden)
        self.fc2 = pointwise(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        return self.fc2(F.gelu(x + self.dwconv(x)))


class ShuntedBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, sr_ratio: int, eps: float, drop_path: float):
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps)
        self.attn = ShuntedAttention(dim, heads, sr_ratio)
        self.norm2 = LayerNorm2d(dim, eps)
        self.mlp = ConvMlp(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stem(nn.Module):
    """7x7 conv-BN-ReLU (stride 2; 1 for small photos), extra 3x3 conv-BN-ReLU pairs, then a 2x2/2
    patch conv and LN (total stride 4, or 2)."""

    def __init__(self, width: int, extra_convs: int, stride: int = 2):
        super().__init__()
        layers = [nn.Conv2d(3, width, 7, stride=stride, padding=3, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(extra_convs):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.patch = nn.Conv2d(width, width, 2, stride=2)
        self.norm = LayerNorm2d(width, PATCH_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.patch(self.convs(x)))


class Downsample(nn.Module):
    """Overlapping 3x3 stride-2 patch embedding + LN, at the start of stages 2-4."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = LayerNorm2d(cout, PATCH_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class Stage(nn.Module):
    def __init__(self, entry: nn.Module, blocks: list[ShuntedBlock], dim: int, eps: float):
        super().__init__()
        self.entry = entry
        self.blocks = nn.Sequential(*blocks)
        self.norm = LayerNorm2d(dim, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.entry(x)))


class ShuntedTransformer(nn.Module):
    """Image classifier: (B, 3, S, S) float32, S a multiple of 32 -> (B, num_classes) logits."""

    def __init__(self, config: ShuntedConfig, num_classes: int = 1000, drop_path_rate: float = 0.0):
        super().__init__()
        self.config, self.num_classes = config, num_classes
        dims = config.embed_dims
        rates = torch.linspace(0, drop_path_rate, sum(config.depths)).tolist()
        stages, prev = [], 0
        for i, depth in enumerate(config.depths):
            entry = Stem(dims[0], config.stem_convs, config.stem_stride) if i == 0 else Downsample(dims[i - 1], dims[i])
            blocks = [ShuntedBlock(dims[i], config.num_heads[i], config.mlp_ratios[i], config.sr_ratios[i],
                                   config.norm_eps, rates[prev + j]) for j in range(depth)]
            stages.append(Stage(entry, blocks, dims[i], config.norm_eps))
            prev += depth
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape[-1])
        check_input_size(x.shape[-2])
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3), keepdim=True).flatten(1))

    def reset_head(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.head.in_features, num_classes)
        _init_weights(self.head)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build(name: str, num_classes: int = 1000, drop_path_rate: float = 0.0, **overrides) -> ShuntedTransformer:
    """Build a variant from the table, optionally overriding config fields (e.g. depths=(1, 1, 1, 1))."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    config = replace(VARIANTS[name], **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return ShuntedTransformer(config, num_classes=num_classes, drop_path_rate=drop_path_rate)
