"""model.deploy: every backend's deploy form computes the plain model's function."""
import pytest
import torch

from model import create_model
from model.deploy import BACKENDS, deploy_form, float_in_int8
from test_model import randomize_norms


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_deploy_form_keeps_logits_and_leaves_the_model_alone(backend, size):
    torch.manual_seed(0)
    model = randomize_norms(create_model("shunted_s", depths=(1, 1, 1, 1))).train()  # a BN-ed extra stem conv
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, size, size)
    deploy = deploy_form(model, backend, size)
    assert model.training and not deploy.training
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), model.eval()(x), atol=1e-4, rtol=1e-4)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_single_token_values_stay_float_in_int8():
    deploy = deploy_form(create_model("shunted_nano"), "xnnpack", 32)
    names = float_in_int8(deploy)
    assert len(names) == 4 and all(name.endswith("coarse_value") for name in names)
    assert float_in_int8(deploy_form(create_model("shunted_nano"), "xnnpack", 64)) == []


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="xnnpack"):
        deploy_form(create_model("shunted_nano"), "tflite", 32)
