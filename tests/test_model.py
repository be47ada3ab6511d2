"""The model package: variants, input sizes, export-friendliness, deploy folding, our checkpoints."""
import copy

import pytest
import torch

from model import CheckpointError, create_model, list_models, save_checkpoint
from model.graph_stats import count_macs, export, graph_stats
from model.shunted import LayerNorm2d, set_channel_norm

EDGE = ["shunted_nano", "shunted_micro"]


def test_list_models_has_published_and_edge_variants():
    assert {"shunted_t", "shunted_s", "shunted_b", *EDGE} <= set(list_models())


@pytest.mark.parametrize("name,millions", [("shunted_t", 11.5), ("shunted_s", 22.4), ("shunted_b", 39.6)])
def test_published_parameter_counts(name, millions):
    params = sum(p.numel() for p in create_model(name).parameters())
    assert abs(params / 1e6 - millions) < 0.06


def test_shunted_t_macs_match_published_work():
    assert abs(count_macs(create_model("shunted_t"), 224) / 1e9 - 2.145) < 0.01


@pytest.mark.parametrize("size", [32, 64, 96, 160])
def test_any_multiple_of_32_runs(size):
    with torch.no_grad():
        out = create_model("shunted_nano", num_classes=7).eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("size,nearest", [(225, "224, 256"), (200, "192, 224"), (16, "32")])
def test_bad_input_size_names_nearest_valid(size, nearest):
    model = create_model("shunted_nano").eval()
    with pytest.raises(ValueError, match=f"nearest valid sizes: {nearest}"):
        model(torch.randn(1, 3, size, size))
    with pytest.raises(ValueError, match="multiple of 32"):
        create_model("shunted_nano", img_size=size)


def test_unknown_variant_lists_choices():
    with pytest.raises(ValueError, match="shunted_t"):
        create_model("shunted_xl")


@pytest.mark.parametrize("name", list_models())
def test_export_is_rank4_static_and_lean(name):
    stats = graph_stats(export(create_model(name), 224))
    assert stats["max_rank"] <= 4
    assert stats["symbolic_shapes"] == []
    blocks = sum(create_model(name).config.depths)
    assert stats["layout_ops"] <= 12 * blocks + 1  # see the README's per-block table


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


@pytest.mark.parametrize("mode", ["conv", "last_axis"])
def test_channel_norm_modes_compute_the_same_function(mode):
    torch.manual_seed(0)
    model = randomize_norms(create_model("shunted_nano").eval())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        other = set_channel_norm(model, mode)(x)
    assert all(n.mode == mode for n in model.modules() if isinstance(n, LayerNorm2d))
    torch.testing.assert_close(other, reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="last_axis"):
        set_channel_norm(model, "batch")


def test_fuse_for_deploy_keeps_outputs():
    torch.manual_seed(0)
    model = randomize_norms(create_model("shunted_s").eval())  # has an extra stem conv + BN
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = model.fuse_for_deploy()(x)
        last_axis = set_channel_norm(model, "last_axis")(x)
        conv = set_channel_norm(model, "conv")(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded = [m for m in model.modules() if isinstance(m, LayerNorm2d) and not m.affine]
    assert len(folded) == 2 * sum(model.config.depths) + 1  # two per block, the final norm
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last_axis, before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="padded"):
        model.stages[0].norm.fold_affine_into(model.stages[1].entry.proj)


def nano_with_outputs(size):
    """A shunted_nano with randomised norms, a batch of inputs and the outputs before any rewrite."""
    torch.manual_seed(0)
    model = randomize_norms(create_model("shunted_nano").eval())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return model, x, model(x)


def test_centre_stream_feeds_every_norm_a_centred_input():
    model, x, before = nano_with_outputs(64)
    with torch.no_grad():
        model.fuse_for_deploy().centre_stream()
    inputs = []
    hooks = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
             for m in model.modules() if isinstance(m, LayerNorm2d)]
    for mode in LayerNorm2d.MODES:
        with torch.no_grad():
            torch.testing.assert_close(set_channel_norm(model, mode)(x), before, atol=1e-4, rtol=1e-4)
    for h in hooks:
        h.remove()
    assert len(inputs) == 3 * 26 and all(m.input_centred for m in model.modules() if isinstance(m, LayerNorm2d))
    assert max((t.mean(dim=1).abs().max() / t.abs().max()).item() for t in inputs) < 1e-5


def test_single_token_scales_collapse_at_32_pixels():
    """At 32 px every coarse K/V scale and stage 4 see one token: those attentions become 1x1 convs."""
    model, x, before = nano_with_outputs(32)
    with torch.no_grad():
        deploy = copy.deepcopy(model).fuse_for_deploy(input_size=32)
        after = deploy(x)
    assert [b.attn.collapsed for s in deploy.stages for b in s.blocks] == ["coarse"] * 4 + ["all"]
    coarse = [b.attn.coarse for s in deploy.stages for b in s.blocks if b.attn.sr_ratio > 1]
    assert len(coarse) == 4 and not any(hasattr(branch, "kv") for branch in coarse)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="specialised to 32x32"):
        deploy(torch.randn(1, 3, 64, 64))
    wider = copy.deepcopy(model).fuse_for_deploy(input_size=64)  # nothing collapses: any size still runs
    assert wider.deploy_size is None and wider(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_own_checkpoint_roundtrip_keeps_metadata(tmp_path, suffix):
    labels = [f"class{i}" for i in range(5)]
    model = create_model("shunted_nano", num_classes=5, img_size=64, labels=labels).eval()
    path = save_checkpoint(tmp_path / f"ckpt{suffix}", model, model.meta)
    loaded = create_model(checkpoint_path=path).eval()
    assert loaded.meta["variant"] == "shunted_nano"
    assert loaded.meta["labels"] == labels and loaded.meta["input_size"] == 64
    assert loaded.meta["preprocess"] == model.meta["preprocess"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == [f"ckpt{suffix}"]  # no temporary left behind


def test_head_replaced_only_on_request(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", create_model("shunted_nano", num_classes=10), {"variant": "shunted_nano"})
    with pytest.raises(CheckpointError, match="reset_head"):
        create_model("shunted_nano", num_classes=3, checkpoint_path=path)
    with pytest.warns(UserWarning, match="new 3-class head"):
        model = create_model("shunted_nano", num_classes=3, checkpoint_path=path, reset_head=True,
                             labels=["a", "b", "c"])
    assert model.head.out_features == 3 and model.meta["labels"] == ["a", "b", "c"]


def test_wrong_variant_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "micro.pt", create_model("shunted_micro"), {})
    with pytest.raises(CheckpointError, match="shunted_micro checkpoint, not shunted_nano"):
        create_model("shunted_nano", checkpoint_path=path)


def test_missing_and_corrupt_files_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        create_model("shunted_nano", checkpoint_path=tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        create_model("shunted_nano", checkpoint_path=bad)
