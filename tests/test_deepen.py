"""train/deepen.py: a deeper variant grown from trained weights computes the same function."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import create_model, save_checkpoint  # noqa: E402
from train.deepen import DeepenError, grow, main, max_difference  # noqa: E402


@pytest.fixture()
def trained(tmp_path):
    """A nano_s16 whose every weight is non-trivial (random biases and norms), saved with labels."""
    torch.manual_seed(0)
    model = create_model("shunted_nano_s16", num_classes=3, input_size=32, labels=["a", "b", "c"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return save_checkpoint(tmp_path / "nano.pt", model, model.meta)


def test_grown_model_computes_the_source_function_and_keeps_its_metadata(trained, tmp_path):
    out = tmp_path / "deep.pt"
    assert main([str(trained), "--model", "shunted_nano_s16_deep", "--output", str(out)]) == 0
    source, grown = create_model(checkpoint_path=trained), create_model(checkpoint_path=out)
    assert grown.config.depths == (1, 2, 4, 1) and grown.meta["variant"] == "shunted_nano_s16_deep"
    assert grown.meta["labels"] == ["a", "b", "c"]
    assert max_difference(source, grown, 32) < 1e-5
    # the new blocks start from the stage's last block, silenced only at their residual outputs
    last, new = grown.stages[2].blocks[1], grown.stages[2].blocks[3]
    assert torch.equal(last.mlp.fc1.weight, new.mlp.fc1.weight)
    assert not new.mlp.fc2.weight.any() and not new.attn.proj.bias.any()


def test_grown_blocks_learn(trained):
    grown = grow(create_model(checkpoint_path=trained), "shunted_nano_s16_deep").train()
    loss = grown(torch.randn(4, 3, 32, 32)).logsumexp(1).sum()
    loss.backward()
    assert grown.stages[2].blocks[3].mlp.fc2.weight.grad.abs().sum() > 0


def test_other_widths_are_refused(trained):
    with pytest.raises(DeepenError, match="more than depth"):
        grow(create_model(checkpoint_path=trained), "shunted_micro")


def test_a_shallower_target_is_refused(trained):
    deep = grow(create_model(checkpoint_path=trained), "shunted_nano_s16_deep")
    with pytest.raises(DeepenError, match="fewer than the source"):
        grow(deep, "shunted_nano_s16")


def test_existing_output_is_kept_without_force(trained, tmp_path, capsys):
    out = tmp_path / "deep.pt"
    out.write_text("mine")
    assert main([str(trained), "--model", "shunted_nano_s16_deep", "--output", str(out)]) == 2
    assert out.read_text() == "mine" and "--force" in capsys.readouterr().err
