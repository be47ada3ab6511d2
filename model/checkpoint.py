"""Reading and writing checkpoints: official Shunted ones, plain state dicts, ours, safetensors.

Nothing is unpickled beyond tensors and plain data (``torch.load(weights_only=True)`` with only
``argparse.Namespace`` allowed, which the official training script stores under 'args').
Official key names are mapped onto this package's layout by :func:`official_to_native`.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from pathlib import Path

import torch

from .shunted import VARIANTS

FORMAT = "shunted-edge/1"
_SAFETENSORS_META_KEY = "shunted_edge"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why and what to do."""


# --- official key names -> ours --------------------------------------------------------------
_ATTN_RENAMES = {
    "sr1": "coarse.reduce", "norm1": "coarse.norm", "kv1": "coarse.kv", "local_conv1": "coarse.local",
    "sr2": "fine.reduce", "norm2": "fine.norm", "kv2": "fine.kv", "local_conv2": "fine.local",
    "local_conv": "local", "q": "q", "kv": "kv", "proj": "proj",
}


def _rename_official(key: str, stem_patch_index: int) -> str:
    if m := re.fullmatch(r"patch_embed1\.conv\.(\d+)\.(.+)", key):
        index, rest = int(m[1]), m[2]
        return f"stages.0.entry.patch.{rest}" if index == stem_patch_index else f"stages.0.entry.convs.{index}.{rest}"
    if m := re.fullmatch(r"patch_embed(\d)\.(proj|norm)\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.entry.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.attn\.(\w+)\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.{_ATTN_RENAMES.get(m[3], m[3])}.{m[4]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.mlp.dwconv.{m[3]}"
    if m := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"norm(\d)\.(.+)", key):
        return f"stages.{int(m[1]) - 1}.norm.{m[2]}"
    return key


def is_official_layout(state_dict: dict) -> bool:
    return any(k.startswith(("patch_embed1.", "block1.")) for k in state_dict)


def official_to_native(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to ours; shapes are fitted later (Linear -> 1x1 conv, LN -> (C,1,1))."""
    stem_indices = [int(m[1]) for k in state_dict if (m := re.fullmatch(r"patch_embed1\.conv\.(\d+)\.weight", k))]
    patch_index = max(stem_indices, default=-1)
    return {_rename_official(k, patch_index): v for k, v in state_dict.items()}


# --- architecture inference -------------------------------------------------------------------
def describe_architecture(state_dict: dict[str, torch.Tensor]) -> dict | None:
    """Depths, stem convs and widths of a native-layout state dict, or None if not recognisable."""
    depths = []
    for stage in range(4):
        blocks = {int(m[1]) for k in state_dict if (m := re.match(rf"stages\.{stage}\.blocks\.(\d+)\.", k))}
        depths.append(len(blocks))
    norms = [state_dict.get(f"stages.{i}.norm.weight") for i in range(4)]
    if not all(depths) or any(n is None for n in norms):
        return None
    stem_convs = sum(1 for k in state_dict if re.fullmatch(r"stages\.0\.entry\.convs\.\d+\.weight", k)
                     and state_dict[k].dim() == 4) - 1
    head = state_dict.get("head.weight")
    return {"depths": tuple(depths), "stem_convs": stem_convs,
            "embed_dims": tuple(int(n.shape[0]) for n in norms),
            "num_classes": int(head.shape[0]) if head is not None else None}


def identify_variant(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name of the variant whose architecture matches a native-layout state dict, if any."""
    arch = describe_architecture(state_dict)
    if arch is None:
        return None
    for name, cfg in VARIANTS.items():
        if (cfg.depths, cfg.stem_convs, cfg.embed_dims) == (arch["depths"], arch["stem_convs"], arch["embed_dims"]):
            return name
    return None


# --- reading ----------------------------------------------------------------------------------
def _torch_load(path: Path) -> object:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or not a "
                                  f"torch.save file); check the file") from None
        raise CheckpointError(
            f"refused to load {path}: it contains pickled code ({found[1]}), and only tensors and plain "
            f"data are loaded; re-save it with torch.save(model.state_dict(), ...) or as .safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:160] if str(err) else ''}); check the file") from None


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({err}); check the file") from None
    meta = json.loads(header[_SAFETENSORS_META_KEY]) if _SAFETENSORS_META_KEY in header else {}
    return tensors, meta


def _unwrap(obj: object, path: Path) -> tuple[dict, dict]:
    """(state dict, metadata) from any supported container."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj["state_dict"], obj.get("meta", {})
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key], {}
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, {}
    raise CheckpointError(f"{path} holds no model weights: expected a state dict, a dict with 'model' "
                          f"(official training format) or a shunted-edge checkpoint")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint file into (native-layout state dict, metadata dict; empty if none)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the path of a .pt/.pth/.safetensors file")
    if path.suffix == ".safetensors":
        state_dict, meta = _read_safetensors(path)
    else:
        state_dict, meta = _unwrap(_torch_load(path), path)
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if is_official_layout(state_dict):
        state_dict = official_to_native(state_dict)
    return state_dict, meta


# --- fitting into a model ---------------------------------------------------------------------
def _fits(value: torch.Tensor, shape: torch.Size) -> bool:
    """True if ``value`` equals ``shape`` up to trailing singleton axes (Linear -> 1x1 conv, LN)."""
    src, dst = tuple(value.shape), tuple(shape)
    return src == dst or (len(dst) > len(src) and dst[:len(src)] == src and all(d == 1 for d in dst[len(src):]))


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str,
               skip: tuple[str, ...] = ()) -> None:
    """Copy a native-layout state dict into ``model`` or raise CheckpointError naming every problem."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    given = {k: v for k, v in state_dict.items() if not k.startswith(skip)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(given) if not _fits(given[k], expected[k].shape))
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing(unexpected)}")
        if misshaped:
            problems.append("mis-shaped: " + _listing(
                [f"{k} {tuple(given[k].shape)} vs expected {tuple(expected[k].shape)}" for k in misshaped]))
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    fitted = {k: given[k].reshape(expected[k].shape).to(expected[k].dtype) for k in expected}
    model.load_state_dict(fitted, strict=not skip)


# --- writing ----------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict, extra: dict | None = None) -> Path:
    """Write weights + metadata atomically (temporary file, then rename); .safetensors or torch format."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(state_dict, str(tmp), metadata={_SAFETENSORS_META_KEY: json.dumps(meta)})
        else:
            torch.save({"format": FORMAT, "meta": meta, "state_dict": state_dict, "extra": extra or {}}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
