"""Grow trained weights into a deeper variant of the same widths, computing the same function.

    python train/deepen.py runs/nano_s16/final.pt --model shunted_nano_s16_deep \\
        --output runs/deep/grown.pt

Every block of the source keeps its place; each stage's extra blocks are appended after its last
one as copies of it whose two residual outputs (attention ``proj``, MLP ``fc2``) are zero, so the
grown network starts as the source (checked on random inputs before writing) and its new blocks
start from trained features rather than noise. Fine-tune the result with
``train/train.py --checkpoint OUTPUT``; metadata (labels, preprocessing, rule) carries over.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common.cli import Parser, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.outputs import check_output  # noqa: E402
from model import VARIANTS, create_model, save_checkpoint  # noqa: E402
from model.shunted import ShuntedTransformer  # noqa: E402

RESIDUAL_OUTPUTS = ("attn.proj", "mlp.fc2")


class DeepenError(UserError, ValueError):
    """The target variant cannot be grown from the source."""


def grow(source: ShuntedTransformer, variant: str) -> ShuntedTransformer:
    """A ``variant`` model holding ``source``'s blocks plus zero-output copies of each stage's last.

    Args:
        source: trained model; ``variant`` must have its widths, heads and ratios and at least its depths.
    Returns:
        The grown model (eval mode) with ``source.meta`` under the new variant name.
    """
    old, new = source.config, VARIANTS[variant]
    if (old.embed_dims, old.num_heads, old.mlp_ratios, old.sr_ratios, old.stem_convs, old.stem_stride) != (
            new.embed_dims, new.num_heads, new.mlp_ratios, new.sr_ratios, new.stem_convs, new.stem_stride):
        raise DeepenError(f"{variant} differs from the source in more than depth; choose a variant with its "
                          f"widths {old.embed_dims} and stem")
    if any(d_new < d_old for d_old, d_new in zip(old.depths, new.depths)):
        raise DeepenError(f"{variant} has depths {new.depths}, fewer than the source's {old.depths} in a stage")
    grown = create_model(variant, num_classes=source.num_classes, input_size=source.meta["input_size"])
    state = {}
    for key, value in source.state_dict().items():
        state[key] = value
        parts = key.split(".")
        if parts[0] != "stages" or parts[2] != "blocks":
            continue
        stage, block, rest = int(parts[1]), int(parts[3]), ".".join(parts[4:])
        if block != old.depths[stage] - 1:
            continue
        for extra in range(old.depths[stage], new.depths[stage]):
            copied = value.clone()
            if rest.rsplit(".", 1)[0] in RESIDUAL_OUTPUTS:
                copied.zero_()
            state[f"stages.{stage}.blocks.{extra}.{rest}"] = copied
    grown.load_state_dict(state, strict=True)
    grown.meta = {**source.meta, "variant": variant}
    return grown.eval()


@torch.no_grad()
def max_difference(a: torch.nn.Module, b: torch.nn.Module, input_size: int, samples: int = 8) -> float:
    """Largest absolute logit difference of the two models on seeded random images."""
    x = torch.randn(samples, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    return float((a.eval()(x) - b.eval()(x)).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="trained weights (ours or an official checkpoint)")
    p.add_argument("--model", required=True, choices=list(VARIANTS), help="deeper variant with the same widths")
    p.add_argument("--output", required=True, help="where to write the grown checkpoint (.pt or .safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite --output")
    args = p.parse_args(argv)

    def command() -> int:
        output = Path(args.output)
        check_output(output, args.force)
        source = create_model(checkpoint_path=args.checkpoint)
        grown = grow(source, args.model)
        diff = max_difference(source, grown, source.meta["input_size"])
        if diff > 1e-4:
            raise RuntimeError(f"the grown model differs from the source by {diff:.2e}")
        save_checkpoint(output, grown, grown.meta, overwrite=args.force)
        print(f"{output}: {args.model} grown from {Path(args.checkpoint).name} (depths {source.config.depths} -> "
              f"{grown.config.depths}), max logit difference {diff:.1e}")
        return 0

    return run_cli(command)

if __name__ == "__main__":
    sys.exit(main())
