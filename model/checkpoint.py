"""Reading and writing checkpoints: official Shunted ones, plain state dicts, ours, safetensors.

Nothing is unpickled beyond tensors and plain data (``torch.load(weights_only=True)`` with only
``argparse.Namespace`` allowed, which the official training script stores under 'args').
Official key names are mapped onto this package's layout by :func:`_rename_official`.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from common.errors import UserError
from common.outputs import partial, publish

from .shunted import VARIANTS

FORMAT = "shunted-edge/1"
_SAFETENSORS_META_KEY = "shunted_edge"
_META_TYPES = {"variant": str, "num_classes": int, "input_size": int, "labels": list, "preprocess": dict,
               "dataset": str}


class CheckpointError(UserError):
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


def _to_official(key: str, stem_patch_index: int) -> str:
    """Inverse of :func:`_rename_official` (error messages; :meth:`Checkpoint.file_key`)."""
    if m := re.fullmatch(r"stages\.0\.entry\.(convs\.(\d+)|patch|norm)\.(.+)", key):
        part = "norm" if m[1] == "norm" else f"conv.{m[2] if m[2] else stem_patch_index}"
        return f"patch_embed1.{part}.{m[3]}"
    if m := re.fullmatch(r"stages\.(\d)\.entry\.(.+)", key):
        return f"patch_embed{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.attn\.(\w+(?:\.\w+)?)\.(weight|bias)", key):
        official = {ours: theirs for theirs, ours in _ATTN_RENAMES.items()}.get(m[3], m[3])
        return f"block{int(m[1]) + 1}.{m[2]}.attn.{official}.{m[4]}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(\d+)\.mlp\.dwconv\.(.+)", key):
        return f"block{int(m[1]) + 1}.{m[2]}.mlp.dwconv.dwconv.{m[3]}"
    if m := re.fullmatch(r"stages\.(\d)\.blocks\.(.+)", key):
        return f"block{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"stages\.(\d)\.norm\.(.+)", key):
        return f"norm{int(m[1]) + 1}.{m[2]}"
    return key


def is_official_layout(state_dict: dict) -> bool:
    return any(k.startswith(("patch_embed1.", "block1.")) for k in state_dict)


def stem_patch_index(state_dict: dict[str, torch.Tensor]) -> int:
    """Index of the 2x2 patch conv in an official ``patch_embed1.conv`` Sequential (its last conv)."""
    indices = [int(m[1]) for k in state_dict if (m := re.fullmatch(r"patch_embed1\.conv\.(\d+)\.weight", k))]
    return max(indices, default=-1)


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
    except Exception as err:  # a damaged or foreign file fails in many ways (KeyError, EOFError, ...); none runs code
        detail = str(err).splitlines()[0][:160] if str(err).strip() else ""
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}"
                              f"{': ' + detail if detail else ''}); check the file") from None


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({err}); check the file") from None
    try:
        meta = json.loads(header[_SAFETENSORS_META_KEY]) if _SAFETENSORS_META_KEY in header else {}
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its '{_SAFETENSORS_META_KEY}' metadata is not valid JSON ({err}); "
                              f"re-save the file with model.save_checkpoint") from None
    return tensors, _checked_meta(meta, path)


def _checked_meta(meta: object, path: Path) -> dict:
    wrong = [type(meta).__name__] if not isinstance(meta, dict) else \
        [f"{key} ({type(meta[key]).__name__})" for key, kind in _META_TYPES.items()
         if meta.get(key) is not None and not isinstance(meta[key], kind)]
    if wrong:
        raise CheckpointError(f"{path}: its metadata has the wrong type ({', '.join(wrong)}); re-save the file "
                              f"with model.save_checkpoint")
    return meta


def _checked_state_dict(state_dict: object, path: Path) -> dict:
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in state_dict.items()):
        raise CheckpointError(f"{path} holds no model weights: its state dict is not a mapping of names to "
                              f"tensors; re-save it with torch.save(model.state_dict(), ...)")
    return state_dict


def _unwrap(obj: object, path: Path) -> tuple[dict, dict]:
    """(state dict, metadata) from any supported container."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _checked_state_dict(obj.get("state_dict"), path), _checked_meta(obj.get("meta", {}), path)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return _checked_state_dict(obj[key], path), {}
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, {}
    raise CheckpointError(f"{path} holds no model weights: expected a state dict, a dict with 'model' "
                          f"(official training format) or a shunted-edge checkpoint")


@dataclass
class Checkpoint:
    """Weights in our layout, the file's metadata (empty if none) and the file's own key names."""

    state_dict: dict[str, torch.Tensor]
    meta: dict
    official: bool  # written with the official key names
    stem_patch_index: int = -1

    def file_key(self, key: str) -> str:
        """``key`` as this file's convention names it."""
        return _to_official(key, self.stem_patch_index) if self.official else key


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint file (official, plain, ours or .safetensors) into our layout."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise CheckpointError(f"checkpoint {path} {what}; pass the path of a .pt/.pth/.safetensors file")
    if path.suffix == ".safetensors":
        state_dict, meta = _read_safetensors(path)
    else:
        state_dict, meta = _unwrap(_torch_load(path), path)
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not is_official_layout(state_dict):
        return Checkpoint(state_dict, meta, official=False)
    patch = stem_patch_index(state_dict)
    return Checkpoint({_rename_official(k, patch): v for k, v in state_dict.items()}, meta, True, patch)


# --- fitting into a model ---------------------------------------------------------------------
def _fits(value: torch.Tensor, shape: torch.Size) -> bool:
    """True if ``value`` equals ``shape`` up to trailing singleton axes (Linear -> 1x1 conv, LN)."""
    src, dst = tuple(value.shape), tuple(shape)
    return src == dst or (len(dst) > len(src) and dst[:len(src)] == src and all(d == 1 for d in dst[len(src):]))


def _file_shape(shape: torch.Size, file_rank: int) -> tuple[int, ...]:
    """Our shape written in the file's convention (trailing singleton axes dropped to its rank)."""
    dims = tuple(shape)
    while len(dims) > max(file_rank, 1) and dims[-1] == 1:
        dims = dims[:-1]
    return dims


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state(model: torch.nn.Module, checkpoint: Checkpoint, source: str, skip: tuple[str, ...] = ()) -> None:
    """Copy checkpoint weights into ``model`` or raise CheckpointError naming every problem.

    Keys in the message are the file's own (official names for an official checkpoint); an
    expected shape is given in the file's convention (Linear weights 2-D, LayerNorm 1-D).
    """
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    given = {k: v for k, v in checkpoint.state_dict.items() if not k.startswith(skip)}
    name = checkpoint.file_key
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(k for k in set(expected) & set(given) if not _fits(given[k], expected[k].shape))
    if missing or unexpected or misshaped:
        problems = []
        if missing:
            problems.append(f"missing keys: {_listing([name(k) for k in missing])}")
        if unexpected:
            problems.append(f"unexpected keys: {_listing([name(k) for k in unexpected])}")
        if misshaped:
            problems.append("mis-shaped: " + _listing([
                f"{name(k)} {tuple(given[k].shape)} vs expected {_file_shape(expected[k].shape, given[k].dim())}"
                for k in misshaped]))
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    fitted = {k: given[k].reshape(expected[k].shape).to(expected[k].dtype) for k in expected}
    model.load_state_dict(fitted, strict=not skip)


# --- writing ----------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict, extra: dict | None = None,
                    overwrite: bool = True) -> Path:
    """Write weights + metadata atomically (temporary file, then rename); .safetensors or torch format.
    Without ``overwrite`` an existing ``path`` is kept (common.outputs.OutputError)."""
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with partial(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(state_dict, str(tmp), metadata={_SAFETENSORS_META_KEY: json.dumps(meta)})
        else:
            torch.save({"format": FORMAT, "meta": meta, "state_dict": state_dict, "extra": extra or {}}, tmp)
        publish(tmp, path, force=overwrite)
    return path


def save_with_meta(source: str | os.PathLike, path: str | os.PathLike, meta: dict, overwrite: bool = False) -> Path:
    """Copy our checkpoint ``source`` to ``path`` with its metadata replaced by ``meta``; tensors and
    the rest of the file (training history) stay as they are."""
    source, path = Path(source), Path(path)
    stored = _torch_load(source) if source.suffix != ".safetensors" else None
    if not (isinstance(stored, dict) and stored.get("format") == FORMAT):
        raise CheckpointError(f"{source} is not a shunted-edge .pt checkpoint; save it with save_checkpoint first")
    with partial(path) as tmp:
        torch.save({**stored, "meta": meta}, tmp)
        publish(tmp, path, force=overwrite)
    return path
