"""Does empirical bias correction help int8? Measured in the PT2E simulation (XNNPACK's int8 scheme).

    python benchmarks/research/bias_correction.py                                  # the shipped model
    python benchmarks/research/bias_correction.py --checkpoint C --data FOLDER --rounds 2

Each quantized conv/linear's own systematic error, with the inputs the int8 network really feeds it,
is ``mean(op(dq(x), dq(w)) - op(x, w))`` per output channel over the calibration images (one pass:
every op's float inputs are the values its quantize nodes read). Subtracting it from the op's bias
in the float model and quantizing again (new ranges, new weights) is one round; later rounds
measure what is left. Each round is judged like the converters judge (common/contract.py) on the
held-out images, against the original fp32 model. Ops without a bias are left as they are.
Measured 2026-12-03 on three corpus models: no measurable gain (docs/quantization.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import copy  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cli import Parser, run_cli  # noqa: E402
from common.contract import measure  # noqa: E402
from common.errors import UserError  # noqa: E402
from quantize.pt2e import module_path, quantize_pt2e, whole_batches, xnnpack_quantizer  # noqa: E402
from quantize.sensitivity import Study, build_study, padded_logits  # noqa: E402
from common.quiet import quiet_third_party  # noqa: E402
from common.text_table import text_table  # noqa: E402

CORRECTED = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def _dequantized(node) -> bool:
    return isinstance(node, torch.fx.Node) and "dequantize" in str(node.target)


class LocalError(torch.fx.Interpreter):
    """Runs a quantized graph (``fold_weights=False``) and sums each corrected op's own mean error."""

    def __init__(self, graph: torch.fx.GraphModule):
        super().__init__(graph, garbage_collect_values=False)
        self.sums: dict[str, torch.Tensor] = {}

    def run_node(self, node):
        out = super().run_node(node)
        if node.op == "call_function" and node.target in CORRECTED and all(map(_dequantized, node.args[:2])):
            x, w = (self.env[arg.args[0].args[0]] for arg in node.args[:2])  # dequantize <- quantize <- float
            rest = [self.env[a] if isinstance(a, torch.fx.Node) else a for a in node.args[2:]]
            error = out - node.target(x, w, *rest)
            dims = (0, 2, 3) if error.dim() == 4 else tuple(range(error.dim() - 1))
            path = module_path(node)
            self.sums[path] = self.sums.get(path, 0) + error.double().mean(dims)
        return out


def local_bias(graph: torch.fx.GraphModule, calibration: np.ndarray, batch: int) -> dict[str, torch.Tensor]:
    """Per module path, the mean per-channel error its op adds (calibration padded to whole batches)."""
    interpreter, count = LocalError(graph), 0
    with torch.no_grad():
        for padded, _ in whole_batches(calibration, batch):
            interpreter.run(padded)
            count += 1
    return {path: total / count for path, total in interpreter.sums.items()}


def corrected(model: torch.nn.Module, errors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of ``model`` whose biases absorb ``errors``."""
    model = copy.deepcopy(model)
    for path, error in errors.items():
        bias = getattr(model.get_submodule(path), "bias", None)
        if bias is not None:
            with torch.no_grad():
                bias -= error.to(bias.dtype)
    return model


def study_rounds(study: Study, rounds: int) -> list[dict]:
    """The contract's figures of plain int8 (round 0: the study's own graph) and after each correction round."""
    model, graph, figures = study.model, study.graph, []
    for round_ in range(rounds + 1):
        if round_:
            model = corrected(model, local_bias(graph, study.calibration, study.example.shape[0]))
            graph = quantize_pt2e(model, study.example, study.calibration, xnnpack_quantizer(study.keep_float),
                                  fold_weights=False)
        figures.append({"round": round_, **measure(study.reference, padded_logits(graph, study.images),
                                                    len(study.images), study.labels)})
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="weights (default: the shipped model)")
    parser.add_argument("--model", help="variant, for random weights without --checkpoint")
    parser.add_argument("--data", help="cifar10, fashion-mnist or an image folder (default: the checkpoint's dataset)")
    parser.add_argument("--calib-size", type=int, help="calibration images (default as the converters)")
    parser.add_argument("--held-out", type=int, default=1000, help="most real images to judge on (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="correction rounds (default 2)")
    args = parser.parse_args(argv)
    quiet_third_party()

    def run() -> int:
        if args.rounds < 0:
            raise UserError(f"--rounds must be >= 0, got {args.rounds}")
        study = build_study(args.checkpoint, args.model, args.data, args.calib_size, args.held_out)
        rows = study_rounds(study, args.rounds)
        print(text_table(["round", "top-1 agreement", "95% lower bound", "cosine p5", "SQNR dB", "delta top-1"],
                         [[str(f["round"]), f"{f['top1_agreement']:.2%}", f"{f['agreement_lower95']:.2%}",
                           f"{f['cosine_p5']:.4f}", f"{f['sqnr_db']:.2f}",
                           "n/a" if f.get("delta_top1_points") is None else f"{f['delta_top1_points']:+.2f}"]
                          for f in rows], right_from=1))
        print(f"{len(study.images)} held-out images, {len(study.calibration)} calibration images; round 0 = plain int8")
        return 0
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
