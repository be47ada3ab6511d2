"""model.deploy: each rewrite keeps the plain model's outputs; deploy_form's backend forms."""
import pytest
import torch

from model import create_model
from model.deploy import BACKENDS, Recipe, deploy_form, float_in_int8, rewrite
from model.deploy.attention import FewReshapesAttention, SingleTokenAttention, SingleTokenCoarseAttention
from model.deploy.folding import fold_affine
from model.deploy.norms import MEANS, DeployLayerNorm2d, NormForm, SubtractChannelMean, channel_norm
from model.shunted import LayerNorm2d


def randomize_norms(model):
    """Non-trivial statistics and affine parameters in every BatchNorm and LayerNorm2d, so folding shows."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, (torch.nn.BatchNorm2d, LayerNorm2d)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


def with_outputs(size, name="shunted_nano", **overrides):
    """A model with randomised norms, a batch of inputs and the outputs before any rewrite."""
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, **overrides).eval())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return model, x, model(x)


def deploy_norms(model):
    norms = [m for m in model.modules() if isinstance(m, DeployLayerNorm2d)]
    assert norms and not any(isinstance(m, LayerNorm2d) for m in model.modules())
    return norms


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_deploy_form_keeps_logits_and_leaves_the_model_alone(backend, size):
    model, x, before = with_outputs(size, "shunted_s", depths=(1, 1, 1, 1))  # a BatchNorm-ed extra stem conv
    state = {k: v.clone() for k, v in model.state_dict().items()}
    deploy = deploy_form(model.train(), backend, size)
    assert model.training and not deploy.training
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), before, atol=1e-4, rtol=1e-4)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_deploy_form_of_the_stride_16_variant(backend):
    model, x, before = with_outputs(32, "shunted_nano_s16")
    with torch.no_grad():
        torch.testing.assert_close(deploy_form(model, backend, 32)(x), before, atol=1e-4, rtol=1e-4)


def test_unknown_backend_and_norm_form_are_named():
    with pytest.raises(ValueError, match="xnnpack"):
        deploy_form(create_model("shunted_nano"), "tflite", 32)
    with pytest.raises(ValueError, match="last_axis"):
        NormForm("batch")


@pytest.mark.parametrize("means", MEANS)
def test_each_norm_form_computes_the_layer_norm(means):
    torch.manual_seed(0)
    norm = randomize_norms(LayerNorm2d(32, eps=1e-6))
    x = 1e-3 * torch.randn(2, 32, 8, 8)  # a variance near eps: a form that drops or misplaces eps shows
    centred = x - x.mean(dim=1, keepdim=True)
    with torch.no_grad():
        want = norm(x)
        torch.testing.assert_close(channel_norm(norm, NormForm(means))(x), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(channel_norm(norm, NormForm(means, centred_input=True))(centred), want,
                                   atol=1e-5, rtol=1e-5)
        stream = channel_norm(norm, NormForm(means, centre_output=True))(x)
    torch.testing.assert_close(stream, want - want.mean(dim=1, keepdim=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("means", MEANS)
def test_norm_forms_keep_the_model_outputs(means):
    model, x, before = with_outputs(64)
    deploy = rewrite(model, Recipe(fold_norms=False, norm_means=means), 64)
    deploy_norms(deploy)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("means", MEANS)
def test_folding_keeps_outputs(means):
    model, x, before = with_outputs(64, "shunted_s")  # has an extra stem conv + BN
    deploy = rewrite(model, Recipe(norm_means=means), 64)
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), before, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    bare = [norm for norm in deploy_norms(deploy) if not list(norm.parameters())]
    assert len(bare) == 2 * sum(model.config.depths) + 1  # two per block, the final norm
    with pytest.raises(ValueError, match="padded"):
        fold_affine(model.stages[0].norm, [model.stages[1].entry.proj])


@pytest.mark.parametrize("means", MEANS)
def test_centred_stream_feeds_every_norm_a_centred_input(means):
    model, x, before = with_outputs(64)
    deploy = rewrite(model, Recipe(norm_means=means, centred_stream=True), 64)
    norms = deploy_norms(deploy)
    assert not any(isinstance(norm[0], SubtractChannelMean) for norm in norms)
    inputs = []
    hooks = [norm.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for norm in norms]
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), before, atol=1e-4, rtol=1e-4)
    for hook in hooks:
        hook.remove()
    assert len(inputs) == 26
    assert max((t.mean(dim=1).abs().max() / t.abs().max()).item() for t in inputs) < 1e-5


def test_single_token_scales_collapse_at_32_pixels():
    """At 32 px every coarse K/V scale and stage 4 see one token: those attentions become 1x1 convs."""
    model, x, before = with_outputs(32)
    deploy = deploy_form(model, "portable", 32)
    with torch.no_grad():
        after = deploy(x)
    kinds = [type(b.attn) for s in deploy.stages for b in s.blocks]
    assert kinds == [SingleTokenCoarseAttention] * 4 + [SingleTokenAttention]
    assert not any(hasattr(b.attn.coarse, "kv") for s in deploy.stages[:3] for b in s.blocks)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="specialised to 32x32 inputs, got 64x64"):
        deploy(torch.randn(1, 3, 64, 64))
    wider = deploy_form(model, "portable", 64)  # nothing collapses: any size still runs
    assert wider(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


def test_single_token_values_stay_float_in_int8():
    model = create_model("shunted_nano")
    names = float_in_int8(deploy_form(model, "xnnpack", 32))
    assert names == [f"stages.{i}.blocks.{j}.attn.coarse_value" for i, j in [(0, 0), (1, 0), (2, 0), (2, 1)]]
    assert float_in_int8(deploy_form(model, "xnnpack", 64)) == []


def test_core_ml_form_splits_heads_with_fewer_reshapes():
    """One reshape per attended tensor (4 per two-scale attention, 3 for one scale), the same graph at
    every batch size (int8 calibration exports it at another), the same logits."""
    from model.graph_stats import export, graph_stats
    model, x, before = with_outputs(64)
    deploy = deploy_form(model, "coreml", 64)
    assert [type(b.attn) for s in deploy.stages for b in s.blocks] == [FewReshapesAttention] * 5
    with torch.no_grad():
        torch.testing.assert_close(deploy(x[:1]), before[:1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(deploy(x), before, atol=1e-4, rtol=1e-4)
    few, plain = (graph_stats(export(form, 64)) for form in (deploy, deploy_form(model, "portable", 64)))
    assert plain["layout_ops"] - few["layout_ops"] == 4 * 4 + 1 and few["max_rank"] <= 4
