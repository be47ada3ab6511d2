"""Independent, straightforward reference of the Shunted Transformer (CVPR 2022).

Written from the published description in the plain (B, N, C) token formulation
with nn.Linear layers; state_dict keys match the official SSA.py checkpoints.
The tests prove the export-friendly rewrite equivalent to it (tests/test_equivalence.py);
benchmarks/research/vs_published.py exports it as it is, the baseline of our speed-ups.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = {
    # name: (depths, extra stem convs)
    "shunted_t": ((1, 2, 4, 1), 0),
    "shunted_s": ((2, 4, 12, 1), 1),
    "shunted_b": ((3, 4, 24, 2), 2),
}
DIMS = (64, 128, 256, 512)
HEADS = (2, 4, 8, 16)
MLP_RATIOS = (8, 8, 4, 4)
SR_RATIOS = (8, 4, 2, 1)


def tokens_to_image(x, H, W):  # (B, N, C) -> (B, C, H, W), token n = h * W + w
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], H, W)


def image_to_tokens(x):  # (B, C, H, W) -> (B, H*W, C)
    return x.flatten(2).transpose(1, 2)


def split_heads(x, heads):  # (B, N, heads*d) -> (B, heads, N, d)
    B, N, C = x.shape
    return x.reshape(B, N, heads, C // heads).transpose(1, 2)


def merge_heads(x):  # (B, heads, N, d) -> (B, N, heads*d)
    B, h, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, h * d)


class DWConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=True)

    def forward(self, x, H, W):
        return image_to_tokens(self.dwconv(tokens_to_image(x, H, W)))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, H, W):
        x = self.fc1(x)
        x = F.gelu(x + self.dwconv(x, H, W))
        return self.fc2(x)


class Attention(nn.Module):
    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads, self.sr = heads, sr
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=True)
        if sr > 1:
            self.sr1 = nn.Conv2d(dim, dim, sr, sr)
            self.norm1 = nn.LayerNorm(dim)
            self.sr2 = nn.Conv2d(dim, dim, sr // 2, sr // 2)
            self.norm2 = nn.LayerNorm(dim)
            self.kv1 = nn.Linear(dim, dim, bias=True)
            self.kv2 = nn.Linear(dim, dim, bias=True)
            self.local_conv1 = nn.Conv2d(dim // 2, dim // 2, 3, 1, 1, groups=dim // 2)
            self.local_conv2 = nn.Conv2d(dim // 2, dim // 2, 3, 1, 1, groups=dim // 2)
        else:
            self.kv = nn.Linear(dim, 2 * dim, bias=True)
            self.local_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def _attend(self, q, k, v):  # (B, h, N, d), (B, h, M, d) x2
        a = (q @ k.transpose(-2, -1)) * self.scale
        return a.softmax(dim=-1) @ v

    def forward(self, x, H, W):
        B, N, C = x.shape
        h, r = self.heads, self.sr
        q = split_heads(self.q(x), h)  # (B, h, N, d)
        if r > 1:
            img = tokens_to_image(x, H, W)
            halves = []
            for i, (srconv, norm, kvl, lconv, s) in enumerate(
                [(self.sr1, self.norm1, self.kv1, self.local_conv1, r),
                 (self.sr2, self.norm2, self.kv2, self.local_conv2, r // 2)]):
                t = F.gelu(norm(image_to_tokens(srconv(img))))  # (B, M, C)
                kv = kvl(t)
                k, v = kv[..., : C // 2], kv[..., C // 2:]  # (B, M, C/2) each
                v = v + image_to_tokens(lconv(tokens_to_image(v, H // s, W // s)))
                qh = q[:, i * (h // 2):(i + 1) * (h // 2)]
                out = self._attend(qh, split_heads(k, h // 2), split_heads(v, h // 2))
                halves.append(merge_heads(out))  # (B, N, C/2)
            x = torch.cat(halves, dim=-1)
        else:
            kv = self.kv(x)
            k, v = kv[..., :C], kv[..., C:]
            x = merge_heads(self._attend(q, split_heads(k, h), split_heads(v, h)))
            x = x + image_to_tokens(self.local_conv(tokens_to_image(v, H, W)))
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, sr):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, H, W):
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x), H, W)


class StemEmbed(nn.Module):  # official "Head"
    def __init__(self, extra, dim=64):
        super().__init__()
        layers = [nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
        for _ in range(extra):
            layers += [nn.Conv2d(64, 64, 3, 1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
        layers.append(nn.Conv2d(64, dim, kernel_size=2, stride=2))
        self.conv = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.conv(x)
        H, W = x.shape[2:]
        return self.norm(image_to_tokens(x)), H, W


class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 3, 2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        H, W = x.shape[2:]
        return self.norm(image_to_tokens(x)), H, W


class ShuntedReference(nn.Module):
    def __init__(self, depths, extra, num_classes=1000):
        super().__init__()
        self.depths = depths
        for i in range(4):
            pe = StemEmbed(extra, DIMS[0]) if i == 0 else OverlapPatchEmbed(DIMS[i - 1], DIMS[i])
            setattr(self, f"patch_embed{i + 1}", pe)
            setattr(self, f"block{i + 1}", nn.ModuleList(
                [Block(DIMS[i], HEADS[i], MLP_RATIOS[i], SR_RATIOS[i]) for _ in range(depths[i])]))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(DIMS[i], eps=1e-6))
        self.head = nn.Linear(DIMS[3], num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        for i in range(4):
            x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, H, W)
            x = getattr(self, f"norm{i + 1}")(x)
            if i < 3:
                x = tokens_to_image(x, H, W)
        return x.mean(dim=1)

    def forward(self, x):
        return self.head(self.forward_features(x))


def build_reference(name, num_classes=1000):
    depths, extra = VARIANTS[name]
    return ShuntedReference(depths, extra, num_classes)


@torch.no_grad()
def randomize_(model, seed=0):
    """Seeded, realistic-scale values for every parameter and BN buffer."""
    g = torch.Generator().manual_seed(seed)

    def normal_(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)

    def uniform_(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            # Larger query weights give peaked (trained-like) attention instead of ~uniform.
            gain = 3.0 if name.endswith("attn.q") else 1.0
            normal_(m.weight, gain / math.sqrt(fan_in))
            if m.bias is not None:
                normal_(m.bias, 0.05)
        elif isinstance(m, nn.LayerNorm):
            uniform_(m.weight, 0.8, 1.2)
            normal_(m.bias, 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            uniform_(m.weight, 0.8, 1.2)
            normal_(m.bias, 0.05)
            normal_(m.running_mean, 0.1)
            uniform_(m.running_var, 0.5, 1.5)
            m.num_batches_tracked.fill_(12345)
    return model


def official_args(name):
    return argparse.Namespace(
        batch_size=128, epochs=300, model=name, input_size=224, drop=0.0, drop_path=0.1,
        model_ema=False, opt="adamw", opt_eps=1e-8, opt_betas=None, clip_grad=None,
        momentum=0.9, weight_decay=0.05, sched="cosine", lr=1e-3, warmup_lr=1e-6,
        min_lr=1e-5, warmup_epochs=5, cooldown_epochs=10, smoothing=0.1, mixup=0.8,
        cutmix=1.0, data_path="/datasets/imagenet", data_set="IMNET",
        output_dir="checkpoints/" + name, device="cuda", seed=0, resume="",
        start_epoch=0, eval=False, dist_eval=True, num_workers=10, pin_mem=True,
        world_size=8, dist_url="env://", distributed=True, gpu=0, rank=0)


def official_checkpoint(model, path, name=None, optimizer_state_params=2):
    """Save `model` in the official training-checkpoint format (torch.save)."""
    if name is None:
        depths = tuple(len(getattr(model, f"block{i}")) for i in range(1, 5))
        name = next(n for n, (d, _) in VARIANTS.items() if d == depths)
    sd = model.state_dict()
    params = [p for p in model.parameters()]
    g = torch.Generator().manual_seed(1)
    # A plausible AdamW state (moments only for the first few params to keep files small).
    state = {i: {"step": torch.tensor(375300.0),
                 "exp_avg": torch.randn(p.shape, generator=g) * 1e-4,
                 "exp_avg_sq": torch.rand(p.shape, generator=g) * 1e-7}
             for i, p in enumerate(params[:optimizer_state_params])}
    optimizer = {"state": state, "param_groups": [{
        "lr": 1.0e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05,
        "amsgrad": False, "foreach": None, "maximize": False, "capturable": False,
        "differentiable": False, "fused": None, "initial_lr": 1e-3,
        "params": list(range(len(params)))}]}
    lr_scheduler = {"t_in_epochs": True, "noise_range_t": None, "noise_pct": 0.67,
                    "noise_std": 1.0, "noise_seed": 42, "param_group_field": "lr",
                    "_initial_param_group_field": "initial_lr", "base_values": [1e-3],
                    "metric": None, "t_initial": 300, "t_mul": 1.0, "lr_min": 1e-5,
                    "decay_rate": 0.1, "cycle_limit": 1, "warmup_t": 5,
                    "warmup_lr_init": 1e-6, "warmup_prefix": False, "t_in_epoch": True,
                    "warmup_steps": [0.0001998]}
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
              "growth_interval": 2000, "_growth_tracker": 1234}
    ckpt = {"model": sd, "optimizer": optimizer, "lr_scheduler": lr_scheduler,
            "epoch": 299, "scaler": scaler, "args": official_args(name)}
    torch.save(ckpt, path)
    return path
