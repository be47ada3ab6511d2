"""Rank a model's units by int8 sensitivity and find the mixed precision the accuracy contract asks for.

    python quantize/rank_units.py                               # the shipped default model
    python quantize/rank_units.py --checkpoint C --output sens.json

The figures and the method: quantize/sensitivity.py (the library) and docs/quantization.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantize.sensitivity import as_json, build_study, ranking_table, too_small  # noqa: E402


def parse_args(argv: list[str] | None):
    from common.cli import Parser
    parser = Parser(description="Per-unit int8 sensitivity and the mixed precision the accuracy contract asks for.")
    parser.add_argument("--checkpoint", type=Path, help="weights (default: the shipped model)")
    parser.add_argument("--model", help="variant, for random weights without --checkpoint")
    parser.add_argument("--data", help="cifar10, fashion-mnist or an image folder (default: the checkpoint's dataset)")
    parser.add_argument("--calib-size", type=int, help="calibration images (default as the converters)")
    parser.add_argument("--held-out", type=int, default=1000, help="most real images to measure on (default 1000)")
    parser.add_argument("--output", type=Path, help="JSON file (default: <checkpoint>.sensitivity.json)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import json

    from common.cli import run_cli
    from common.errors import UserError
    from common.quiet import quiet_third_party
    args = parse_args(argv)
    quiet_third_party()

    def run() -> int:
        from common.defaults import SHIPPED_CHECKPOINT
        output = args.output or Path(f"{args.checkpoint or args.model or SHIPPED_CHECKPOINT.stem}.sensitivity.json")
        if output.exists() and not args.force:
            raise UserError(f"{output} already exists; pass --force to overwrite it or choose another --output")
        if not output.parent.is_dir():
            raise UserError(f"folder {output.parent} does not exist; create it or choose another --output")
        study = build_study(args.checkpoint, args.model, args.data, args.calib_size, args.held_out)
        warning = too_small(len(study.images))
        if warning:
            print(f"warning: {warning}")
        rows = study.ranking()
        mixed = study.mixed_precision(rows)
        print(ranking_table(rows))
        first, last = mixed["steps"][0], mixed["steps"][-1]
        print(f"\nall units int8 (simulated, {len(study.images)} images): top-1 agreement "
              f"{first['top1_agreement']:.2%}, 95% lower bound {first['agreement_lower95']:.2%}, cosine p5 "
              f"{first['cosine_p5']:.4f}")
        verdict = "meets" if mixed["holds"] else "misses"
        print(f"contract int8 {verdict} with {len(last['float_units'])} units float: {', '.join(last['float_units']) or 'none'}")
        tmp = output.with_name(f".partial-{output.name}")
        tmp.write_text(json.dumps({"images": len(study.images), "warning": warning, **as_json(rows, mixed)}, indent=2))
        tmp.replace(output)
        print(f"wrote {output}")
        return 0
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
