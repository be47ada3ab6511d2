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
    """LayerNorm over the channel axis of a (B, C, H, W) tensor.

    The same function in three forms (``mode``, set per backend with :func:`set_channel_norm`):
    - ``"mean"``: ``mean(dim=1)`` statistics, no layout change (PyTorch, Core ML);
    - ``"conv"``: the channel means as a 1x1 convolution of weight 1/C, an op that XNNPACK
      delegates (its mean only pools over H and W), so an ExecuTorch graph is not cut at every norm;
    - ``"last_axis"``: transpose to channels-last and use the fused ``layer_norm`` (ONNX
      ``LayerNormalization``); ONNX Runtime runs its int8 convs channels-last and cancels the
      transposes, so the graph becomes one fused op per norm instead of ten elementwise ones.
    """

    MODES = ("mean", "conv", "last_axis")

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))
        self.eps = eps
        self.mode = "mean"
        self.affine = True  # False once fold_affine_into() moved weight and bias into the next layers
        self.input_centred = False  # True once centre_stream() made every input channel-centred
        self.centres_output = False  # True once centre_stream() made this norm centre its affine output
        self.register_buffer("mean_weight", torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)
        self.register_buffer("eps_bias", torch.full((1,), float(eps)), persistent=False)

    def _channel_mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "conv":
            return F.conv2d(x, self.mean_weight)
        return x.mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "last_axis":  # the fused op computes its own mean: input_centred changes nothing
            channels = x.shape[1]
            weight, bias = (self.weight.reshape(channels), self.bias.reshape(channels)) if self.affine else (None, None)
            out = F.layer_norm(x.permute(0, 2, 3, 1), (channels,), weight, bias, self.eps).permute(0, 3, 1, 2)
        else:
            centred = x if self.input_centred else x - self._channel_mean(x)
            out = self._conv_normalize(centred) if self.mode == "conv" else self._mean_normalize(centred)
        return out - self._channel_mean(out) if self.centres_output else out

    def _mean_normalize(self, centred: torch.Tensor) -> torch.Tensor:
        normalized = centred * torch.rsqrt(self._channel_mean(centred * centred) + self.eps)
        return normalized * self.weight + self.bias if self.affine else normalized

    def _conv_normalize(self, centred: torch.Tensor) -> torch.Tensor:
        """The rest of the ``conv`` form: eps is the variance conv's bias and the affine a depthwise
        1x1 conv, because XNNPACK runs a scalar add or a (C, 1, 1) multiply channels-first and wraps
        each in two layout transposes (13 XNNPACK ops per affine norm before, 7 now, 5 with a
        centred input)."""
        var = F.conv2d(centred * centred, self.mean_weight, self.eps_bias)
        normalized = centred * torch.rsqrt(var)
        if not self.affine:
            return normalized
        return F.conv2d(normalized, self.weight[:, None], self.bias.flatten(), groups=normalized.shape[1])

    @torch.no_grad()
    def fold_affine_into(self, *consumers: nn.Conv2d | nn.Linear) -> None:
        """Move weight and bias into the layers that read this norm's output (all of them).

        Exact for unpadded convs and linear layers: W x (gamma n + beta) + b =
        (W gamma) n + (b + W beta). Saves a multiply and an add over the tensor per norm.
        """
        if any(isinstance(layer, nn.Conv2d) and any(layer.padding) for layer in consumers):
            raise ValueError("a padded conv reads zeros where the norm's bias would be; cannot fold into it")
        gamma, beta = self.weight.flatten(), self.bias.flatten()
        for layer in consumers:
            shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
            extra_bias = (layer.weight * beta.reshape(shape)).flatten(1).sum(1)
            layer.weight.mul_(gamma.reshape(shape))
            layer.bias.add_(extra_bias)
        self.weight.fill_(1.0)
        self.bias.zero_()
        self.affine = False


@torch.no_grad()
def centre_output_channels(conv: nn.Conv2d) -> None:
    """Make a dense conv's output sum to zero over channels at every pixel (subtract the mean
    output filter and the mean bias); a norm reading it then needs no mean subtraction."""
    if conv.groups != 1:
        raise ValueError("only a dense conv can centre its output channels")
    conv.weight.sub_(conv.weight.mean(dim=0, keepdim=True))
    if conv.bias is not None:
        conv.bias.sub_(conv.bias.mean())


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

    def forward(self, x: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of this scale as (B * heads, head_dim, tokens)."""
        kv = self.kv(F.gelu(self.norm(self.reduce(x))))
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
        self.collapsed: str | None = None  # "coarse" or "all" once collapse_single_tokens() ran

    def input_layers(self) -> list[nn.Conv2d]:
        """Every layer that reads the attention input."""
        if self.collapsed == "all":
            return [self.proj]
        if self.sr_ratio > 1:
            return [self.q, self.coarse.reduce, self.fine.reduce]
        return [self.q, self.kv]

    def output_layers(self) -> list[nn.Conv2d]:
        """The layers whose outputs add up to the attention output."""
        return [self.proj, self.coarse_proj] if self.collapsed == "coarse" else [self.proj]

    @torch.no_grad()
    def collapse_single_tokens(self, tokens: int) -> None:
        """Specialise to a (tokens x tokens) input where a K/V scale aggregates the image to one token.

        Softmax over one key is exactly 1, so every query gets that token's (enhanced) value, and a 3x3
        depthwise conv on a 1x1 image is its centre tap. With sr_ratio 1 the whole attention becomes
        one 1x1 conv (value, enhancement and proj composed). Otherwise the coarse scale becomes two 1x1
        convs on its one token, the enhanced value and its columns of proj (kept apart: composed, they
        quantize worse), broadcast-added to the fine heads' output; q keeps only the fine heads' half.
        Outputs stay the same; the module then runs only at this size.
        """
        if self.collapsed or tokens != self.sr_ratio:
            return
        if self.scale != 1.0:
            raise RuntimeError("fold the attention scale into q first (fuse_for_deploy)")
        if self.sr_ratio == 1:
            value = _enhanced_value(self.kv, self.local)
            proj = self.proj.weight[:, :, 0, 0]
            self.proj = _pointwise_from((proj @ value.weight[:, :, 0, 0])[:, :, None, None],
                                        proj @ value.bias + self.proj.bias)
            del self.q, self.kv, self.local
            self.collapsed = "all"
            return
        width = self.q.out_channels // 2
        self.coarse_value = _enhanced_value(self.coarse.kv, self.coarse.local)
        self.coarse_proj = _pointwise_from(self.proj.weight[:, :width], None)
        self.q = _pointwise_from(self.q.weight[width:], self.q.bias[width:])
        self.proj = _pointwise_from(self.proj.weight[:, width:], self.proj.bias)
        del self.coarse.kv, self.coarse.local
        self.collapsed = "coarse"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.collapsed == "all":
            return self.proj(x)
        b, c, h, w = x.shape
        q = self.q(x)
        if self.collapsed == "coarse":  # the coarse scale's one token reaches every query alike
            k, v = self.fine(x, self.heads // 2)
            out = attend(q.reshape(k.shape[0], self.head_dim, h * w), k, v).reshape(b, c // 2, h, w)
            token = F.gelu(self.coarse.norm(self.coarse.reduce(x)))
            return self.proj(out) + self.coarse_proj(self.coarse_value(token))
        if self.scale != 1.0:  # folded into q by fuse_for_deploy()
            q = q * self.scale
        if self.sr_ratio > 1:
            half, width = self.heads // 2, c // 2
            k1, v1 = self.coarse(x, half)
            k2, v2 = self.fine(x, half)
            q1 = q[:, :width].reshape(b * half, self.head_dim, h * w)
            q2 = q[:, width:].reshape(b * half, self.head_dim, h * w)
            out = torch.cat([attend(q1, k1, v1).reshape(b, width, h, w),
                             attend(q2, k2, v2).reshape(b, width, h, w)], dim=1)
        else:
            kv = self.kv(x)
            v = kv[:, c:]
            heads_shape = (b * self.heads, self.head_dim, h * w)
            out = attend(q.reshape(heads_shape), kv[:, :c].reshape(heads_shape), v.reshape(heads_shape))
            out = out.reshape(b, c, h, w) + self.local(v)
        return self.proj(out)


def _pointwise_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A 1x1 conv holding copies of ``weight`` (out, in, 1, 1) and ``bias``."""
    conv = pointwise(weight.shape[1], weight.shape[0], bias=bias is not None)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


def _enhanced_value(kv: nn.Conv2d, local: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 conv computing v + local(v) on a 1x1 image, v the second half of kv's output."""
    channels = local.out_channels
    gain = 1.0 + local.weight[:, 0, 1, 1]  # a 3x3 conv with padding 1 on one pixel sees its centre tap
    return _pointwise_from(gain[:, None, None, None] * kv.weight[channels:], gain * kv.bias[channels:] + local.bias)


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
    """7x7/2 conv-BN-ReLU, extra 3x3 conv-BN-ReLU pairs, then a 2x2/2 patch conv and LN (stride 4)."""

    def __init__(self, width: int, extra_convs: int):
        super().__init__()
        layers = [nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(extra_convs):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.patch = nn.Conv2d(width, width, 2, stride=2)
        self.norm = LayerNorm2d(width, PATCH_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.patch(self.convs(x)))

    def fold_batchnorm(self) -> None:
        """Fold every eval-mode BatchNorm into the conv before it (outputs unchanged)."""
        layers = list(self.convs)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm2d):
                conv = layers[i - 1]
                gain = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                bias = layer.bias - layer.running_mean * gain
                if conv.bias is not None:
                    bias = bias + conv.bias * gain
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                  stride=conv.stride, padding=conv.padding, bias=True)
                fused.weight.data.copy_(conv.weight * gain.reshape(-1, 1, 1, 1))
                fused.bias.data.copy_(bias)
                layers[i - 1], layers[i] = fused, nn.Identity()
        self.convs = nn.Sequential(*layers)


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
            entry = Stem(dims[0], config.stem_convs) if i == 0 else Downsample(dims[i - 1], dims[i])
            blocks = [ShuntedBlock(dims[i], config.num_heads[i], config.mlp_ratios[i], config.sr_ratios[i],
                                   config.norm_eps, rates[prev + j]) for j in range(depth)]
            stages.append(Stage(entry, blocks, dims[i], config.norm_eps))
            prev += depth
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(dims[-1], num_classes)
        self.deploy_size: int | None = None  # set by fuse_for_deploy(input_size=...)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x.shape[-1])
        check_input_size(x.shape[-2])
        if self.deploy_size is not None and tuple(x.shape[-2:]) != (self.deploy_size,) * 2:
            raise ValueError(f"this deploy model is specialised to {self.deploy_size}x{self.deploy_size} inputs, "
                             f"got {x.shape[-2]}x{x.shape[-1]}; call fuse_for_deploy(input_size=...) on a fresh model")
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3), keepdim=True).flatten(1))

    def int8_float_modules(self) -> list[str]:
        """Modules int8 quantizers leave float: the values of collapsed single-token K/V scales
        (``coarse_value``). They run on one pixel, so int8 saves no time, and an output range
        calibrated from one value per channel and image clips unfamiliar inputs (ONNX Runtime, default
        model, worst-sample cosine on random images: 0.985 quantized, 0.993 float)."""
        return [name for name, _ in self.named_modules() if name.endswith(".coarse_value")]

    def reset_head(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.head.in_features, num_classes)
        _init_weights(self.head)

    @torch.no_grad()
    def fuse_for_deploy(self, fold_norms: bool = True, input_size: int | None = None) -> "ShuntedTransformer":
        """Fold into the convs what needs no op of its own; the outputs stay the same. Eval mode only.

        Stem BatchNorms into their convs, the attention scale into q and, with ``fold_norms``, the
        affine part of the norms that feed only linear layers (each block's two norms, the final
        norm into the head): a backend that fuses whole norms (Core ML) gains nothing from that.
        With ``input_size`` (static shapes) the K/V scales that see one token at that size collapse
        into 1x1 convs (ShuntedAttention.collapse_single_tokens) and the model runs only at that size.
        """
        if self.training:
            raise RuntimeError("fuse_for_deploy() needs eval mode: call model.eval() first")
        self.stages[0].entry.fold_batchnorm()
        for module in self.modules():
            if isinstance(module, ShuntedAttention) and module.scale != 1.0:
                module.q.weight.mul_(module.scale)
                module.q.bias.mul_(module.scale)
                module.scale = 1.0
            if fold_norms and isinstance(module, ShuntedBlock) and module.norm1.affine:
                module.norm1.fold_affine_into(*module.attn.input_layers())
                module.norm2.fold_affine_into(module.mlp.fc1)
        if fold_norms and self.stages[-1].norm.affine:
            self.stages[-1].norm.fold_affine_into(self.head)  # the mean pool between them is linear
        if input_size is not None and self.deploy_size is None:
            check_input_size(input_size)
            attentions = [(block.attn, input_size // (4 * 2 ** i))
                          for i, stage in enumerate(self.stages) for block in stage.blocks]
            for attn, tokens in attentions:
                attn.collapse_single_tokens(tokens)
            if any(attn.collapsed for attn, _ in attentions):
                self.deploy_size = input_size
        return self

    @torch.no_grad()
    def centre_stream(self) -> "ShuntedTransformer":
        """Feed every norm a channel-centred input so that none subtracts a mean (two ops fewer per
        norm where norms run op by op, as in XNNPACK); the outputs stay the same. Eval mode only.

        A norm's output depends only on its centred input. The convs that feed a norm directly (patch
        embeddings, K/V aggregation) centre their outputs; each stage's residual stream is only ever
        read by norms, so it is kept centred: its first value (the entry norm's output) has its
        channel mean subtracted (two ops per stage) and every branch that adds to it (attention
        output, fc2) centres its output.
        """
        if self.training:
            raise RuntimeError("centre_stream() needs eval mode: call model.eval() first")
        for stage in self.stages:
            entry = stage.entry
            if entry.norm.input_centred:
                continue
            centre_output_channels(entry.patch if isinstance(entry, Stem) else entry.proj)
            entry.norm.centres_output = entry.norm.affine  # a bare normalized output is centred already
            norms = [entry.norm, stage.norm]
            for block in stage.blocks:
                attn = block.attn
                for layer in attn.output_layers():
                    centre_output_channels(layer)
                centre_output_channels(block.mlp.fc2)
                norms += [block.norm1, block.norm2]
                for branch in (attn.coarse, attn.fine) if attn.sr_ratio > 1 else ():
                    centre_output_channels(branch.reduce)
                    norms.append(branch.norm)
            for norm in norms:
                norm.input_centred = True
        return self


def set_channel_norm(model: nn.Module, mode: str) -> nn.Module:
    """Put every LayerNorm2d of ``model`` in ``mode`` (see LayerNorm2d.MODES); returns the model."""
    if mode not in LayerNorm2d.MODES:
        raise ValueError(f"unknown channel-norm mode {mode!r}; use one of {', '.join(LayerNorm2d.MODES)}")
    for module in model.modules():
        if isinstance(module, LayerNorm2d):
            module.mode = mode
    return model


def xnnpack_form(model: "ShuntedTransformer") -> "ShuntedTransformer":
    """The norm form XNNPACK runs best: channel means as 1x1 convs and no mean subtraction
    (``centre_stream``); the deploy model is changed in place and returned."""
    return set_channel_norm(model, "conv").centre_stream()


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
