"""benchmarks/research/bias_correction.py: each op's own mean int8 error, and the bias that absorbs it."""
import numpy as np
import torch

from benchmarks.research.bias_correction import corrected, local_bias, main
from quantize.pt2e import quantize_pt2e, xnnpack_quantizer


def _conv_with_systematic_error() -> torch.nn.Module:
    """Per-channel int8 weights whose scale is set by one outlier: the other 143 weights (0.01) round to 0."""
    conv = torch.nn.Conv2d(16, 4, 3, bias=True)
    with torch.no_grad():
        conv.weight.fill_(0.01)
        conv.weight[:, 0, 0, 0] = 10.0
        conv.bias.zero_()
    return conv.eval()


def _quantized(model, calibration):
    return quantize_pt2e(model, torch.from_numpy(calibration[:8]), calibration, xnnpack_quantizer(), fold_weights=False)


def test_local_error_is_the_weight_rounding_times_the_mean_input_and_the_bias_absorbs_it():
    calibration = np.random.default_rng(0).normal(1.0, 0.5, (64, 16, 8, 8)).astype(np.float32)
    model = _conv_with_systematic_error()
    errors = local_bias(_quantized(model, calibration), calibration, 8)
    expected = -0.01 * 143 * calibration.mean()  # sum of (rounded - float) weights times the mean input
    assert list(errors) and np.allclose(next(iter(errors.values())).numpy(), expected, atol=0.05)

    def mean_error(m):
        x = torch.from_numpy(calibration)
        with torch.no_grad():
            return (_quantized(m, calibration)(x[:8]) - model(x[:8])).mean().item()
    assert abs(mean_error(model)) > 1.0 and abs(mean_error(corrected(model, errors))) < 0.2


def test_bad_counts_exit_2(capsys):
    for argv, flag in ((["--held-out", "0"], "--held-out"), (["--rounds", "-1"], "--rounds")):
        assert main(argv) == 2
        assert flag in capsys.readouterr().err
