"""The model package: variants, input sizes, export-friendliness, our checkpoints (deploy forms: test_deploy.py)."""
import pytest
import torch

from model import CheckpointError, create_model, list_models, save_checkpoint
from model.graph_stats import count_macs, export, graph_stats

EDGE = ["shunted_nano", "shunted_micro", "shunted_nano_s16", "shunted_nano_s16_deep"]


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
        create_model("shunted_nano", input_size=size)


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


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_own_checkpoint_roundtrip_keeps_metadata(tmp_path, suffix):
    labels = [f"class{i}" for i in range(5)]
    model = create_model("shunted_nano", num_classes=5, input_size=64, labels=labels).eval()
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


def test_small_photo_variant_has_nanos_weights_and_a_finer_grid(tmp_path):
    nano, s16 = create_model("shunted_nano", num_classes=10), create_model("shunted_nano_s16", num_classes=10)
    assert [p.shape for p in nano.parameters()] == [p.shape for p in s16.parameters()]
    grids = []
    for stage in s16.stages:
        stage.register_forward_hook(lambda module, args, out: grids.append(out.shape[-1]))
    with torch.no_grad():
        s16.eval()(torch.randn(1, 3, 32, 32))
    assert grids == [16, 8, 4, 2]  # nano's grid at 64 px, from a 32 px photo
    path = save_checkpoint(tmp_path / "s16.pt", s16, s16.meta)
    assert create_model(checkpoint_path=path).config.stem_stride == 1  # its own variant, not refused as nano
    with pytest.raises(CheckpointError, match="shunted_nano"):
        create_model("shunted_micro", checkpoint_path=path)


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
