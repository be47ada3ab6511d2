"""Deploy forms of shunted attention: the scale folded into q, K/V scales that see one token, and
heads split with fewer reshapes.

At a fixed input size a K/V scale whose strided conv spans the whole token grid aggregates it to
one token. Softmax over one key is exactly 1, so every query gets that token's value, and a 3x3
depthwise conv on a 1x1 image is its centre tap: the scale's attention is a couple of 1x1 convs.
Such a form runs only at its input size and says so when given another.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..shunted import KVBranch, ShuntedAttention, attend, pointwise


class ScaledQueryAttention(ShuntedAttention):
    """Shunted attention whose query projection already carries the attention scale."""

    @classmethod
    @torch.no_grad()
    def folded_from(cls, attn: ShuntedAttention) -> "ScaledQueryAttention":
        """``attn`` with the scale folded into q; it takes over (and changes) ``attn``'s weights."""
        with torch.device("meta"):  # no memory and no random initialisation for weights replaced next
            folded = cls(attn.q.in_channels, attn.heads, attn.sr_ratio)
        folded.load_state_dict(attn.state_dict(), assign=True)
        folded.q.weight.mul_(attn.scale)
        folded.q.bias.mul_(attn.scale)
        return folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend_heads(self.q(x), x))

    def input_layers(self) -> list[nn.Conv2d]:
        """Every layer that reads the attention input."""
        return [self.q, self.coarse.reduce, self.fine.reduce] if self.sr_ratio > 1 else [self.q, self.kv]

    def output_layers(self) -> list[nn.Conv2d]:
        """The layers whose outputs add up to the attention output."""
        return [self.proj]

    def branches(self) -> list[nn.Module]:
        """The K/V aggregation scales (each a strided ``reduce`` conv read by a ``norm``)."""
        return [self.coarse, self.fine] if self.sr_ratio > 1 else []


def _check_grid(x: torch.Tensor, tokens: int, input_size: int) -> None:
    """Raise ValueError unless ``x`` is the (tokens x tokens) grid an ``input_size`` input gives here."""
    if tuple(x.shape[-2:]) != (tokens, tokens):
        stride = input_size // tokens
        raise ValueError(f"this deploy model is specialised to {input_size}x{input_size} inputs, got "
                         f"{x.shape[-2] * stride}x{x.shape[-1] * stride}; build one for that size with deploy_form")


def _pointwise_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A 1x1 conv holding copies of ``weight`` (out, in, 1, 1) and ``bias``."""
    with torch.device("meta"):
        conv = pointwise(weight.shape[1], weight.shape[0], bias=bias is not None)
    conv.weight = nn.Parameter(weight.clone())
    if bias is not None:
        conv.bias = nn.Parameter(bias.clone())
    return conv


def _enhanced_value(kv: nn.Conv2d, local: nn.Conv2d) -> nn.Conv2d:
    """One 1x1 conv computing v + local(v) on a 1x1 image, v the second half of kv's output."""
    channels = local.out_channels
    gain = 1.0 + local.weight[:, 0, 1, 1]  # a 3x3 conv with padding 1 on one pixel sees its centre tap
    return _pointwise_from(gain[:, None, None, None] * kv.weight[channels:], gain * kv.bias[channels:] + local.bias)


class PooledToken(nn.Module):
    """A K/V scale reduced to its one token: strided conv -> norm -> GELU."""

    def __init__(self, branch: KVBranch):
        super().__init__()
        self.reduce, self.norm = branch.reduce, branch.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.reduce(x)))


class SingleTokenAttention(nn.Module):
    """Attention with one shared K/V scale (sr_ratio 1) on a 1x1 token grid: value, its enhancement
    and proj composed into one 1x1 conv."""

    @torch.no_grad()
    def __init__(self, attn: ScaledQueryAttention, input_size: int):
        super().__init__()
        self.input_size = input_size
        value = _enhanced_value(attn.kv, attn.local)
        proj = attn.proj.weight[:, :, 0, 0]
        self.proj = _pointwise_from((proj @ value.weight[:, :, 0, 0])[:, :, None, None],
                                    proj @ value.bias + attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_grid(x, 1, self.input_size)
        return self.proj(x)

    def output_layers(self) -> list[nn.Conv2d]:
        return [self.proj]

    def branches(self) -> list[nn.Module]:
        return []


class SingleTokenCoarseAttention(nn.Module):
    """Shunted attention whose coarse scale sees one token: the fine heads attend as before (q keeps
    only their half); the coarse heads' output is that token's enhanced value (``coarse_value``) through
    their columns of proj (``coarse_proj``), broadcast to every query. The two convs stay apart:
    composed, they quantize worse."""

    @torch.no_grad()
    def __init__(self, attn: ScaledQueryAttention, input_size: int):
        super().__init__()
        self.heads, self.head_dim, self.input_size = attn.heads // 2, attn.head_dim, input_size
        self.tokens = attn.sr_ratio
        width = attn.q.out_channels // 2
        self.q = _pointwise_from(attn.q.weight[width:], attn.q.bias[width:])
        self.coarse, self.fine = PooledToken(attn.coarse), attn.fine
        self.coarse_value = _enhanced_value(attn.coarse.kv, attn.coarse.local)
        self.coarse_proj = _pointwise_from(attn.proj.weight[:, :width], None)
        self.proj = _pointwise_from(attn.proj.weight[:, width:], attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_grid(x, self.tokens, self.input_size)
        b, c, h, w = x.shape
        q = self.q(x)
        k, v = self.fine(x, self.heads)
        out = attend(q.reshape(k.shape[0], self.head_dim, h * w), k, v).reshape(b, c // 2, h, w)
        return self.proj(out) + self.coarse_proj(self.coarse_value(self.coarse(x)))

    def output_layers(self) -> list[nn.Conv2d]:
        return [self.proj, self.coarse_proj]

    def branches(self) -> list[nn.Module]:
        return [self.coarse, self.fine]


def _padded_depthwise(local: nn.Conv2d) -> nn.Conv2d:
    """A depthwise conv over [K, V] channels: zero taps and bias on K, ``local``'s on V."""
    with torch.device("meta"):
        conv = nn.Conv2d(2 * local.in_channels, 2 * local.out_channels, local.kernel_size, padding=local.padding,
                         groups=2 * local.groups)
    conv.weight = nn.Parameter(torch.cat([torch.zeros_like(local.weight), local.weight]))
    conv.bias = nn.Parameter(torch.cat([torch.zeros_like(local.bias), local.bias]))
    return conv


def attend_4d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:func:`attend` on (B, heads, d, tokens) tensors: the same function, no head folding."""
    weights = torch.softmax(torch.matmul(q.transpose(-1, -2), k), dim=-1)  # (B, heads, N, M)
    return torch.matmul(v, weights.transpose(-1, -2))


class FewReshapesAttention(nn.Module):
    """Scale-folded attention that splits heads with one reshape per tensor it attends with.

    q becomes (B, heads, d, N) once and each scale's half of the heads is a slice of it; a scale's K
    and V leave their conv as one tensor (V's local enhancement a depthwise conv with zero taps on K)
    and become (B, 2 x heads, d, M) with one reshape; the heads' outputs join along the heads axis and
    become the image with one reshape: 4 reshapes per two-scale attention instead of 8, 3 instead of 4
    for one scale, with rank-4 matmuls. Core ML keeps every reshape as a layout op.
    """

    @torch.no_grad()
    def __init__(self, attn: ScaledQueryAttention):
        super().__init__()
        self.attn = attn  # every layer has this one owner (int8 quantization reloads state by name)
        self.heads, self.head_dim, self.sr_ratio = attn.heads, attn.head_dim, attn.sr_ratio
        self.padded_local = nn.ModuleList([_padded_depthwise(branch.local) for branch in attn.branches()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.attn.q(x).reshape(b, self.heads, self.head_dim, h * w)
        if self.sr_ratio == 1:
            kv = self.attn.kv(x)
            keys_values = kv.reshape(b, 2 * self.heads, self.head_dim, h * w)
            out = attend_4d(q, keys_values[:, :self.heads], keys_values[:, self.heads:])
            return self.attn.proj(out.reshape(b, c, h, w) + self.attn.local(kv[:, c:]))
        half, outs = self.heads // 2, []
        for i, (branch, local) in enumerate(zip(self.attn.branches(), self.padded_local)):
            kv_image = branch.kv_image(x)
            keys_values = (kv_image + local(kv_image)).reshape(b, 2 * half, self.head_dim, -1)
            outs.append(attend_4d(q[:, i * half:(i + 1) * half], keys_values[:, :half], keys_values[:, half:]))
        return self.attn.proj(torch.cat(outs, dim=1).reshape(b, c, h, w))


def few_reshapes(model: nn.Module) -> None:
    """Replace every scale-folded attention still in the model (not collapsed) by :class:`FewReshapesAttention`."""
    for block in (b for stage in model.stages for b in stage.blocks):
        if isinstance(block.attn, ScaledQueryAttention):
            block.attn = FewReshapesAttention(block.attn)


def fold_attention_scales(model: nn.Module) -> None:
    """Replace every :class:`ShuntedAttention` by its :class:`ScaledQueryAttention` (one multiply fewer)."""
    for block in (b for stage in model.stages for b in stage.blocks):
        block.attn = ScaledQueryAttention.folded_from(block.attn)


def collapse_single_tokens(model: nn.Module, input_size: int) -> None:
    """Replace the scale-folded attentions that see one K/V token at ``input_size`` by their single-token forms."""
    for i, stage in enumerate(model.stages):
        tokens = input_size // (model.config.stem_total_stride * 2 ** i)  # each later stage halves the grid
        for block in stage.blocks:
            if tokens == block.attn.sr_ratio:
                single = SingleTokenAttention if tokens == 1 else SingleTokenCoarseAttention
                block.attn = single(block.attn, input_size)


def float_in_int8(model: nn.Module) -> list[str]:
    """Modules of a deploy model that int8 quantizers leave float: the values of single-token K/V
    scales. They run on one pixel, so int8 saves no time, and an output range calibrated from one
    value per channel and image clips unfamiliar inputs."""
    return [f"{name}.coarse_value" for name, module in model.named_modules()
            if isinstance(module, SingleTokenCoarseAttention)]
