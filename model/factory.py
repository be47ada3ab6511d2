"""``create_model``/``list_models`` and the metadata every checkpoint carries."""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

from common.errors import UserError

from .checkpoint import CheckpointError, describe_architecture, identify_variant, load_state, read_checkpoint
from .shunted import INPUT_MULTIPLE, VARIANTS, ShuntedConfig, ShuntedTransformer, build, check_input_size

DEFAULT_INPUT_SIZE = 224
IMAGENET_CLASSES = 1000  # the head of the published checkpoints (ILSVRC-2012)


class ModelError(UserError, ValueError):
    """A model request that cannot be built (unknown variant, unsupported input size, label count)."""


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < INPUT_MULTIPLE:
        raise ModelError(f"input size {size} is not supported: it must be a positive multiple of {INPUT_MULTIPLE} "
                         f"(32, 64, ..., 224, ...)")
    try:
        check_input_size(size)
    except ValueError as err:
        raise ModelError(str(err)) from None


def forward_bytes(config: ShuntedConfig, size: int, batch: int = 1) -> int:
    """A lower bound of a float32 forward pass's peak memory: the largest single activation (a stage's
    MLP hidden layer or its attention scores; stage i has (size / (stem stride * 2**i))**2 tokens)."""
    largest = 0
    for i, (dim, heads, mlp, ratio) in enumerate(zip(config.embed_dims, config.num_heads, config.mlp_ratios,
                                                     config.sr_ratios)):
        tokens = (size // (config.stem_total_stride << i)) ** 2
        keys = tokens // ratio ** 2 + tokens // max(ratio // 2, 1) ** 2 if ratio > 1 else 2 * tokens  # per head pair
        largest = max(largest, tokens * dim * mlp, heads // 2 * tokens * keys)
    return 4 * batch * largest


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: ShuntedConfig, size: int, batch: int = 1) -> None:
    """ModelError if one forward pass at ``size`` x ``batch`` needs more memory than this machine has."""
    needed, available = forward_bytes(config, size, batch), physical_memory()
    if available is not None and needed > available:
        raise ModelError(f"input size {size} with batch {batch} needs at least {needed / 2 ** 30:,.0f} GiB of memory "
                         f"for one forward pass; this machine has {available / 2 ** 30:,.0f} GiB: use a smaller "
                         f"--input-size or --batch")


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(VARIANTS)


def imagenet_preprocess(input_size: int) -> dict:
    """Preprocessing of the official ImageNet checkpoints (resize 256 bicubic, centre crop 224)."""
    from data.preprocess import imagenet_preprocess as spec
    return spec(input_size)


def make_meta(variant: str, num_classes: int, input_size: int, labels: list[str] | None = None,
              preprocess: dict | None = None, **extra) -> dict:
    """The metadata dict stored with weights: everything a converter, benchmark or app needs."""
    _check_size(input_size)
    if labels is not None and len(labels) != num_classes:
        raise ModelError(f"{len(labels)} labels given for {num_classes} classes")
    return {"variant": variant, "num_classes": num_classes, "input_size": input_size,
            "labels": list(labels) if labels is not None else None,
            "preprocess": preprocess or imagenet_preprocess(input_size), **extra}


def _layer_shapes(config: ShuntedConfig) -> tuple:
    return config.depths, config.stem_convs, config.embed_dims


def _check_variant(name: str, state_dict: dict, source: str) -> None:
    """CheckpointError unless the weights fit ``name``'s layers (variants that differ only in strides
    share their weights' shapes)."""
    found = identify_variant(state_dict)
    if found is not None and _layer_shapes(VARIANTS[found]) != _layer_shapes(VARIANTS[name]):
        raise CheckpointError(f"{source} is a {found} checkpoint, not {name}; use --model {found} "
                              f"(create_model('{found}', ...))")


def create_model(name: str | None = None, num_classes: int | None = None, checkpoint_path: str | None = None,
                 input_size: int | None = None, reset_head: bool = False, labels: list[str] | None = None,
                 drop_path_rate: float = 0.0, **overrides) -> ShuntedTransformer:
    """Build a Shunted Transformer variant, optionally loading weights.

    ``checkpoint_path`` may be an official Shunted checkpoint (dict with 'model'), a plain state dict,
    a shunted-edge checkpoint or a ``.safetensors`` file. ``name`` defaults to the checkpoint's
    variant and ``num_classes`` to the checkpoint's head (1000 without a checkpoint). A different
    ``num_classes`` re-initialises the head only with ``reset_head=True`` (fine-tuning). The
    returned model carries ``model.meta`` (variant, classes, labels, input size, preprocessing).
    """
    checkpoint, state_dict, meta, source = None, None, {}, None
    if checkpoint_path is not None:
        source = f"checkpoint {checkpoint_path}"
        checkpoint = read_checkpoint(checkpoint_path)
        state_dict, meta = checkpoint.state_dict, checkpoint.meta
        name = name or meta.get("variant") or identify_variant(state_dict)
        if name is None:
            raise CheckpointError(f"{source}: cannot tell which variant it holds; pass the model name")
    if name is None:
        raise ModelError(f"create_model needs a model name; choose one of: {', '.join(VARIANTS)}")
    if name not in VARIANTS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    if state_dict is not None and not overrides:
        _check_variant(name, state_dict, source)

    ckpt_classes = (describe_architecture(state_dict) or {}).get("num_classes") if state_dict is not None else None
    classes = num_classes or ckpt_classes or (len(labels) if labels else 1000)
    if input_size is None:
        input_size = meta.get("input_size") or DEFAULT_INPUT_SIZE
    _check_size(input_size)
    check_memory(replace(VARIANTS[name], **overrides), input_size)

    model = build(name, num_classes=classes, drop_path_rate=drop_path_rate, **overrides)
    keep_labels = meta.get("labels")
    if state_dict is not None:
        skip: tuple[str, ...] = ()
        if ckpt_classes is not None and ckpt_classes != classes:
            if not reset_head:
                raise CheckpointError(
                    f"{source} has a {ckpt_classes}-class head but num_classes={classes} was asked for; "
                    f"pass reset_head=True (--reset-head) to fine-tune with a new head")
            warnings.warn(f"{source}: {ckpt_classes}-class head replaced by a new {classes}-class head "
                          f"(randomly initialised, for fine-tuning)", stacklevel=2)
            skip, keep_labels = ("head.",), None
        load_state(model, checkpoint, source, skip=skip)
    preprocess = meta.get("preprocess") if meta.get("input_size") == input_size else None
    dataset = meta.get("dataset") if keep_labels is not None else None  # a new head means new data
    same_head = keep_labels is meta.get("labels")
    untrained = bool(meta.get("random_weights")) and same_head  # trained once fine-tuned
    abstain = meta.get("abstain") if same_head and preprocess else None  # measured on this head and input
    if keep_labels is None and classes == ckpt_classes == IMAGENET_CLASSES and not untrained:
        from data.imagenet import imagenet_labels  # official weights carry no class names
        keep_labels = imagenet_labels()
    model.meta = make_meta(name, classes, input_size, labels=labels or keep_labels, preprocess=preprocess,
                           source=str(Path(checkpoint_path).name) if checkpoint_path else None,
                           **({"dataset": dataset} if dataset else {}), **({"random_weights": True} if untrained else {}),
                           **({"abstain": abstain} if abstain else {}))
    return model
