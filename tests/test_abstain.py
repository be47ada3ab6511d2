"""The "not sure" rule (common/abstain.py), the tool that measures it (benchmarks/abstention.py), and the
shipped model's rule on photos it knows and on images it cannot know."""
import json

import numpy as np
import pytest
import torch

from benchmarks import abstention
from common.abstain import AbstainRule, confidence, softmax, threshold_keeping
from common.defaults import CIFAR10_CHECKPOINT, FASHION_MNIST_CHECKPOINT
from data import DataError, build_dataset
from model import create_model, make_meta, read_checkpoint, save_checkpoint
from test_data import make_cifar


def test_threshold_keeps_the_asked_share():
    values = np.linspace(0.1, 1.0, 1000)
    for keep in (0.99, 0.95, 0.8, 1.0):
        assert (values >= threshold_keeping(values, keep)).mean() >= keep
        assert (values > threshold_keeping(values, keep)).mean() < keep  # the highest such floor
    with pytest.raises(ValueError, match="keep"):
        threshold_keeping(values, 0)


def test_rule_from_meta_and_its_checks():
    assert AbstainRule.from_meta({}) is None
    rule = AbstainRule.from_meta({"abstain": {"score": "max_softmax", "threshold": 0.5}})
    assert rule.abstains(0.49) and not rule.abstains(0.5)
    np.testing.assert_array_equal(rule.abstains(np.array([0.2, 0.7])), [True, False])
    with pytest.raises(ValueError, match="probability"):
        AbstainRule(1.5)
    with pytest.raises(ValueError, match="unknown abstention score"):
        AbstainRule(0.5, "energy")
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    assert confidence(logits)[0] == pytest.approx(softmax(logits)[0, 0]) and softmax(logits).sum() == pytest.approx(1)


def test_tool_measures_embeds_and_keeps_user_files(tmp_path, capsys):
    folder = make_cifar(tmp_path, per_class=20)
    torch.manual_seed(0)
    model = create_model("shunted_nano_s16", num_classes=10, input_size=32)
    source = f"cifar10:{folder}"
    meta = make_meta("shunted_nano_s16", 10, 32, build_dataset(source, "test").classes,
                     build_dataset(source, "test").spec, dataset=source)
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, meta)
    out, embedded = tmp_path / "rule.json", tmp_path / "m_rule.pt"
    args = [str(checkpoint), "--ood", "scene-free", "--json", str(out), "--embed", str(embedded)]
    assert abstention.main(args) == 0
    printed = capsys.readouterr().out
    assert "correct answers kept" in printed and "scene-free" in printed
    rule = json.loads(out.read_text())
    assert rule["keep_target"] == 0.95 and 0 < rule["threshold"] < 1
    assert [row["keep_target"] for row in rule["sweep"]] == [0.99, 0.95, 0.9, 0.8]
    measured = rule["measured"]
    assert measured["correct_kept"]["n"] + measured["wrong_abstained"]["n"] == 100  # the odd half of 200
    assert measured["out_of_domain"]["scene-free"]["n"] == abstention.SCENE_FREE_COUNT
    stored = read_checkpoint(embedded)
    assert stored.meta["abstain"] == rule
    for key, value in read_checkpoint(checkpoint).state_dict.items():
        assert torch.equal(stored.state_dict[key], value)  # the weights are untouched
    out.write_text("user data")
    assert abstention.main(args) == 2 and out.read_text() == "user data"  # no overwrite without --force
    assert "--force" in capsys.readouterr().err


def fashion_mnist_available() -> bool:
    try:
        build_dataset("fashion-mnist", "test", None, limit=1)
        return True
    except DataError:
        return False


# each shipped model: its in-domain data, and images it cannot know (always available: generated or shipped)
SHIPPED = {"cifar10": (CIFAR10_CHECKPOINT, "cifar10", "scene-free"),
           "fashion-mnist": (FASHION_MNIST_CHECKPOINT, "fashion-mnist", "cifar10")}


def logits_of(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(b)) for b in np.array_split(images, max(1, len(images) // 500))]).numpy()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_rule_keeps_what_it_knows_and_declines_what_it_cannot(name):
    """On the test images the floor was not chosen on (the odd half), the rule keeps at least 93% of the
    correct answers (95% Wilson lower bound), and declines images of things the model was never taught
    more often than correct answers (lower bound of the one share above the upper bound of the other)."""
    checkpoint, data, unknown = SHIPPED[name]
    if "fashion-mnist" in (data, unknown) and not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed")
    model = create_model(checkpoint_path=checkpoint).eval()
    rule, spec = AbstainRule.from_meta(model.meta), model.meta["preprocess"]
    test = build_dataset(data, "test", spec)
    odd = range(1, len(test), 2)
    logits = logits_of(model, np.stack([test[i][0].numpy() for i in odd]))
    correct = logits.argmax(1) == np.array(test.targets)[1::2]
    kept = abstention.wilson(int((~rule.abstains(confidence(logits)) & correct).sum()), int(correct.sum()))
    assert kept["lower95"] >= 0.93
    images = abstention.ood_images(unknown, spec)
    declined = abstention.wilson(int(rule.abstains(confidence(logits_of(model, images))).sum()), len(images))
    assert declined["lower95"] > 1 - kept["lower95"], (declined, kept)
