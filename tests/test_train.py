"""train/: training falls in loss, resumes, fine-tunes onto new classes, fails cleanly; DDP; shipped weights."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import TRAINED as SHIPPED  # noqa: E402
from data import FASHION_MNIST_CLASSES, DataError, build_dataset, fashion_mnist_preprocess  # noqa: E402
from data.fashion_mnist import load_fashion_mnist  # noqa: E402
from model import create_model, file_sha256, make_meta, save_checkpoint  # noqa: E402
from train import train as train_cli  # noqa: E402
from train.compare import compare, mcnemar_p  # noqa: E402
from train.compare import main as compare_cli  # noqa: E402
from train.cutmix import CutMix  # noqa: E402
from train.distill import Teacher  # noqa: E402
from train.ema import WeightAverage  # noqa: E402
from train.evaluate import main as evaluate_main  # noqa: E402
from train.evaluate import split_of  # noqa: E402

COLORS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
QUICK = ["--input-size", "32", "--batch-size", "6", "--warmup-epochs", "0", "--label-smoothing", "0"]


def fashion_mnist_available() -> bool:
    try:
        load_fashion_mnist(None, "test")
        return True
    except DataError:
        return False


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread, and other jobs may share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three colour classes, 15 noisy 40x40 PNGs each (80/10/10 split: 11 train, 2 val, 2 test)."""
    root = tmp_path_factory.mktemp("colors")
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (root / name).mkdir()
        for i in range(15):
            pixels = np.clip(np.array(color) + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def training_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_loss_falls(folder, tmp_path):
    train_cli.run(["--data", str(folder), "--epochs", "5", "--lr", "1e-3", "--output", str(tmp_path), *QUICK])
    history = training_state(tmp_path / "last.pt")["extra"]["history"]
    assert len(history) == 5 and all(h["img_s"] > 0 for h in history)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"], history


def test_resume_continues_from_saved_epoch(folder, tmp_path, capsys):
    args = ["--data", str(folder), "--output", str(tmp_path), *QUICK]
    train_cli.run([*args, "--epochs", "1"])
    first = training_state(tmp_path / "last.pt")["extra"]
    steps = int(first["optimizer"]["state"][0]["step"])
    assert first["epoch"] == 1 and steps == 6  # 33 images, 6 per batch

    train_cli.run(["--resume", str(tmp_path / "last.pt"), "--epochs", "3"])
    assert "resuming after epoch 1" in capsys.readouterr().out
    extra = training_state(tmp_path / "last.pt")["extra"]
    assert extra["epoch"] == 3 and [h["epoch"] for h in extra["history"]] == [1, 2, 3]
    assert int(extra["optimizer"]["state"][0]["step"]) == 3 * steps  # Adam moments continued, not restarted
    assert extra["scheduler"]["last_epoch"] == 3 * steps
    assert extra["args"]["batch_size"] == 6 and extra["args"]["data"] == str(folder)  # the run's own settings


def test_finetune_with_reset_head_gets_new_labels(folder, tmp_path):
    base = tmp_path / "fmnist10.pt"
    torch.manual_seed(0)
    model = create_model("shunted_nano", num_classes=10, input_size=32)
    save_checkpoint(base, model, make_meta("shunted_nano", 10, 32, FASHION_MNIST_CLASSES, fashion_mnist_preprocess(32)))

    assert train_cli.main(["--checkpoint", str(base), "--data", str(folder), "--output", str(tmp_path), *QUICK]) == 2
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="3-class head"):
        tuned = train_cli.run(["--checkpoint", str(base), "--reset-head", "--data", str(folder), "--epochs", "1",
                               "--output", str(out), *QUICK])
    meta = training_state(out / "final.pt")["meta"]
    assert meta["labels"] == sorted(COLORS) and meta["num_classes"] == 3 and tuned.head.out_features == 3
    assert meta["preprocess"]["grayscale"] is False and meta["preprocess"]["crop"] == 32

    reloaded = create_model(checkpoint_path=out / "final.pt")
    assert reloaded.meta["labels"] == sorted(COLORS)
    assert evaluate_main([str(out / "final.pt"), "--data", str(folder), "--split", "val"]) == 0
    report = json.loads((out / "final.accuracy.json").read_text())
    assert report["n"] == 6 and set(report["per_class"]) == set(COLORS)
    assert report["checkpoint_sha256"] == file_sha256(out / "final.pt") and 0 <= report["top1"] <= report["top5"]


def test_bf16_autocast_trains_on_cpu_and_fp16_is_refused(folder, tmp_path, capsys):
    model = train_cli.run(["--data", str(folder), "--epochs", "1", "--amp", "bf16", "--output", str(tmp_path), *QUICK])
    history = training_state(tmp_path / "last.pt")["extra"]["history"]
    assert np.isfinite(history[0]["loss"]) and next(model.parameters()).dtype == torch.float32
    assert train_cli.main(["--data", str(folder), "--amp", "fp16", "--output", str(tmp_path / "b"), *QUICK]) == 2
    assert "--amp fp16 needs a CUDA GPU" in capsys.readouterr().err


def test_finetuning_keeps_the_checkpoints_variant_size_and_colour_preprocessing(folder, tmp_path):
    from data import cifar10_preprocess
    base = tmp_path / "s16.pt"
    torch.manual_seed(0)
    model = create_model("shunted_nano_s16", num_classes=10, input_size=32)
    save_checkpoint(base, model, make_meta("shunted_nano_s16", 10, 32, list("abcdefghij"), cifar10_preprocess(32)))
    with pytest.warns(UserWarning, match="3-class head"):
        tuned = train_cli.run(["--checkpoint", str(base), "--reset-head", "--data", str(folder), "--epochs", "1",
                               "--output", str(tmp_path / "run"), "--batch-size", "6"])
    assert tuned.meta["variant"] == "shunted_nano_s16" and tuned.config.stem_stride == model.config.stem_stride
    assert tuned.meta["input_size"] == 32 and tuned.meta["preprocess"] == cifar10_preprocess(32)


def test_cutmix_pastes_one_box_of_a_partner_and_mixes_the_loss_by_area():
    images, targets = torch.rand(8, 3, 32, 32), torch.arange(8)
    logits, criterion = torch.randn(8, 8), torch.nn.CrossEntropyLoss()
    for seed in range(10):
        mixed = CutMix(1.0)(images, targets, np.random.default_rng(seed))
        moved = mixed.partners != targets
        assert moved.any() and torch.equal(mixed.partners, targets[mixed.partners])  # a permutation
        pasted = (mixed.images != images).any(1)  # (N, H, W): pixels no longer the image's own
        box = pasted[moved.nonzero()[0, 0]]
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        assert bool(box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all())  # one rectangle
        assert all(torch.equal(pasted[i], box) for i in moved.nonzero().flatten())
        assert torch.equal(mixed.images[moved][:, :, box], images[mixed.partners[moved]][:, :, box])
        assert mixed.keep == pytest.approx(1 - box.float().mean().item())
        expected = mixed.keep * criterion(logits, targets) + (1 - mixed.keep) * criterion(logits, mixed.partners)
        assert torch.allclose(mixed.loss(criterion, logits), expected)
    assert CutMix(0.0)(images, targets, np.random.default_rng(0)).images is images
    mixed_share = sum(CutMix(0.5)(images, targets, np.random.default_rng(s)).keep < 1 for s in range(200)) / 200
    assert 0.35 < mixed_share < 0.65


def test_teacher_targets_average_the_image_and_its_mirror_and_the_loss_is_zero_only_in_agreement():
    torch.manual_seed(0)
    model = create_model("shunted_nano", num_classes=5, input_size=32)
    images = torch.rand(4, 3, 32, 32)
    teacher = Teacher(model, weight=0.7, temperature=2.0)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        own, mirrored = (torch.softmax(model(x) / 2.0, 1) for x in (images, images.flip(-1)))
    targets = teacher.targets(images)
    assert torch.allclose(targets, (own + mirrored) / 2, atol=1e-6) and not torch.allclose(targets, own, atol=1e-4)
    assert teacher.loss(2.0 * targets.log(), targets).item() == pytest.approx(0.0, abs=1e-5)  # T * log p: same p
    other = torch.randn(4, 5)
    assert teacher.loss(other, targets).item() > 0.01
    labels_loss = torch.tensor(3.0)
    assert teacher.mix(labels_loss, other, images).item() == pytest.approx(
        0.3 * 3.0 + 0.7 * teacher.loss(other, targets).item(), rel=1e-5)
    for weight, temperature in ((0.0, 1.0), (1.0, 1.0), (0.5, 0.0)):
        with pytest.raises(ValueError):
            Teacher(model, weight, temperature)


def test_distillation_trains_from_a_teacher_of_the_same_classes_only(folder, tmp_path, capsys):
    train_cli.run(["--data", str(folder), "--epochs", "1", "--output", str(tmp_path / "base"), *QUICK])
    teacher = tmp_path / "base" / "final.pt"
    train_cli.run(["--checkpoint", str(teacher), "--teacher", str(teacher), "--distill", "0.7", "--data", str(folder),
                   "--epochs", "2", "--output", str(tmp_path / "kd"), "--batch-size", "6"])
    extra = training_state(tmp_path / "kd" / "last.pt")["extra"]
    assert extra["args"]["teacher"] == str(teacher) and extra["args"]["distill"] == 0.7
    assert len(extra["history"]) == 2 and all(np.isfinite(h["loss"]) for h in extra["history"])

    other = tmp_path / "fmnist.pt"
    save_checkpoint(other, create_model("shunted_nano", num_classes=10, input_size=32),
                    make_meta("shunted_nano", 10, 32, FASHION_MNIST_CLASSES, fashion_mnist_preprocess(32)))
    capsys.readouterr()
    assert train_cli.main(["--data", str(folder), "--teacher", str(other), "--epochs", "1",
                           "--output", str(tmp_path / "bad"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --teacher") and "same data" in err and err.count("\n") == 1, err
    assert "differs from the student in labels" in err and "T-shirt/top" in err, err
    assert train_cli.main(["--data", str(folder), "--teacher", str(teacher), "--distill", "1",
                           "--output", str(tmp_path / "bad2"), *QUICK]) == 2
    assert "--distill must be > 0 and < 1" in capsys.readouterr().err


def test_weight_average_moves_each_float_tensor_by_one_minus_decay_and_copies_integers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = WeightAverage(model, 0.75)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update()
    average = ema.state_dict()
    assert torch.allclose(average["0.weight"], start["0.weight"] + 0.25)
    assert torch.equal(average["0.bias"], start["0.bias"]) and average["1.num_batches_tracked"].item() == 7
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    for decay in (0.0, 1.0):
        with pytest.raises(ValueError):
            WeightAverage(model, decay)


def test_ema_run_writes_the_average_as_final_weights_and_resume_restores_it(folder, tmp_path, capsys):
    run = tmp_path / "run"
    train_cli.run(["--data", str(folder), "--ema", "0.8", "--epochs", "2", "--output", str(run), *QUICK])
    assert "(the EMA of the weights)" in capsys.readouterr().out
    last = training_state(run / "last.pt")
    final = training_state(run / "final.pt")["state_dict"]
    average, weights = last["extra"]["ema"], last["state_dict"]
    assert all(torch.equal(final[k], average[k]) for k in final)  # final.pt holds the average ...
    assert not torch.allclose(final["head.weight"], weights["head.weight"])  # ... not the last step's weights
    assert all(h["val_top1_ema"] is not None for h in last["extra"]["history"])
    (run / "final.pt").unlink()
    train_cli.run(["--resume", str(run / "last.pt"), "--epochs", "2"])  # nothing left to train: writes final.pt
    resumed = training_state(run / "final.pt")["state_dict"]
    assert all(torch.equal(resumed[k], average[k]) for k in resumed)  # the saved average, not restarted


def test_paired_comparison_counts_discordant_images_and_gives_the_exact_mcnemar_p():
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_p(97, 118) == mcnemar_p(118, 97) and 0.1 < mcnemar_p(97, 118) < 0.2
    a = np.array([True] * 90 + [False] * 10)
    b = a.copy()
    b[:3], b[90:98] = False, True  # B loses 3 photos A gets right, wins 8 that A misses
    result = compare(a, b)
    assert (result["only_a"], result["only_b"], result["gain_points"]) == (3, 8, 5.0)
    assert result["top1_a"] == 90.0 and result["top1_b"] == 95.0
    low, high = result["gain_95"]
    assert low < 5.0 < high and result["p_value"] == pytest.approx(mcnemar_p(3, 8))


def test_compare_cli_runs_both_checkpoints_on_one_split_and_refuses_other_classes(folder, tmp_path, capsys):
    train_cli.run(["--data", str(folder), "--epochs", "1", "--output", str(tmp_path / "base"), *QUICK])
    base = tmp_path / "base" / "final.pt"
    assert compare_cli([str(base), str(base), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "6 images" in out and "only A right 0, only B right 0" in out and "p = 1" in out, out
    other = tmp_path / "fmnist.pt"
    save_checkpoint(other, create_model("shunted_nano", num_classes=10, input_size=32),
                    make_meta("shunted_nano", 10, 32, FASHION_MNIST_CLASSES, fashion_mnist_preprocess(32)))
    assert compare_cli([str(base), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "differ in labels and preprocess" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("case", ["empty folder", "missing idx", "bad path", "unwritable output", "cutmix 1.5",
                                  "val-fraction 1", "folder with trivial"])
def test_user_mistakes_exit_2_with_one_line(case, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    args = {"empty folder": ["--data", str(tmp_path / "empty")],
            "missing idx": ["--data", f"fashion-mnist:{tmp_path / 'empty'}"],
            "bad path": ["--data", str(tmp_path / "nope")],
            "unwritable output": ["--output", str(tmp_path / "a_file" / "run")],
            "cutmix 1.5": ["--cutmix", "1.5"],
            "val-fraction 1": ["--val-fraction", "1"],
            "folder with trivial": ["--data", str(tmp_path), "--augment", "trivial"]}[case]
    proc = subprocess.run([sys.executable, str(ROOT / "train" / "train.py"), *args, "--epochs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # cwd: not the repo root
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_evaluate_missing_checkpoint_exits_2(tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and err.count("\n") == 1


def test_the_judged_split_must_be_named_and_hold_images(folder, tmp_path):
    meta = make_meta("shunted_nano", 3, 32, sorted(COLORS), fashion_mnist_preprocess(32))
    with pytest.raises(DataError, match="does not name its dataset: pass --data"):
        split_of("a.pt", meta, None, "test")
    name, dataset = split_of("a.pt", {**meta, "dataset": str(folder)}, None, "test", limit=2)
    assert name == str(folder) and len(dataset) == 2
    empty = tmp_path / "one_per_class"
    for color in COLORS:
        (empty / color).mkdir(parents=True)
        shutil.copy(folder / color / "0.png", empty / color)
    with pytest.raises(DataError, match="holds no images; pick another split"):
        split_of("a.pt", meta, str(empty), "test")


@pytest.mark.slow
def test_torchrun_ddp_ranks_hold_identical_weights_and_buffers(folder, tmp_path):
    helper = tmp_path / "ddp_helper.py"
    helper.write_text(textwrap.dedent(f"""
        import hashlib, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from train.train import run
        model = run(sys.argv[2:])
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values()))
        with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"]), "w") as f:
            f.write(digest.hexdigest())
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(helper),
           str(tmp_path), "--data", str(folder), "--epochs", "1", "--steps", "3", "--batch-size", "2",
           "--input-size", "32", "--output", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    digests = [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    extra = training_state(tmp_path / "run" / "last.pt")["extra"]
    assert int(extra["optimizer"]["state"][0]["step"]) == 3 and len(extra["rng"]) == 2


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_shipped_fashion_mnist_checkpoint_reaches_90_percent():
    assert SHIPPED.stat().st_size <= 5 * 2**20
    model = create_model(checkpoint_path=SHIPPED).eval()
    meta = model.meta
    assert meta["variant"] == "shunted_nano" and meta["labels"] == FASHION_MNIST_CLASSES
    images, targets = build_dataset("fashion-mnist", "test", meta["preprocess"]).as_tensor()
    with torch.no_grad():
        predictions = torch.cat([model(batch).argmax(1) for batch in images.split(500)])
    top1 = 100.0 * (predictions == targets).double().mean().item()
    assert len(targets) == 10000 and top1 >= 90.0
    report = json.loads(SHIPPED.with_suffix(".accuracy.json").read_text())
    assert report["checkpoint_sha256"] == file_sha256(SHIPPED) and abs(report["top1"] - top1) < 0.01


@pytest.mark.slow
def test_shipped_cifar10_model_by_an_independent_loop():
    """The CIFAR-10 model's top-1 on the 10,000 CIFAR-10 test photos, read straight from the shipped archive
    and preprocessed from the checkpoint's spec with PIL and numpy alone (not data/), equals its recorded
    accuracy reference."""
    import io
    import tarfile
    from common.defaults import CIFAR10_CHECKPOINT, SHIPPED_VARIANT
    from data.cifar10 import SHIPPED as ARCHIVE
    model = create_model(checkpoint_path=CIFAR10_CHECKPOINT).eval()
    meta, spec = model.meta, model.meta["preprocess"]
    assert meta["variant"] == SHIPPED_VARIANT and meta["dataset"] == "cifar10" and meta["input_size"] == 32
    assert spec["resize"] == spec["crop"] == 32 and not spec["grayscale"]
    mean, std = np.array(spec["mean"], np.float32), np.array(spec["std"], np.float32)
    images, labels = [], []
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.isfile() and parts[0] == "test":
                photo = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                assert photo.size == (32, 32)  # resize 32 and centre crop 32 leave it as it is
                images.append((np.asarray(photo, np.float32) / 255 - mean) / std)
                labels.append(meta["labels"].index(parts[1]))
    x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        predictions = torch.cat([model(batch).argmax(1) for batch in x.split(500)]).numpy()
    top1 = 100.0 * (predictions == np.array(labels)).mean()
    assert len(labels) == 10_000 and top1 >= 90.0  # the target the default meets (bar 88%; docs/training.md)
    report = json.loads(CIFAR10_CHECKPOINT.with_suffix(".accuracy.json").read_text())
    assert report["checkpoint_sha256"] == file_sha256(CIFAR10_CHECKPOINT) and abs(report["top1"] - top1) < 0.01


class NaNLogits(torch.nn.Module):
    """A model that has diverged: every logit NaN."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.full((len(x), 10), float("nan")) * self.weight


def test_a_nan_loss_stops_training_with_what_to_do():
    from train.cli import TrainError
    from train.distributed import Context
    from train.loop import Precision, make_scheduler, train_one_epoch
    model = NaNLogits()
    optimizer = torch.optim.AdamW(model.parameters())
    loader = [(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))] * 3
    with pytest.raises(TrainError, match="loss became nan at step 1 .*--amp off or without --compile"):
        train_one_epoch(model, loader, 3, optimizer=optimizer, scheduler=make_scheduler(optimizer, 0, 3),
                        scaler=torch.amp.GradScaler("cpu", enabled=False), criterion=torch.nn.CrossEntropyLoss(),
                        precision=Precision(torch.bfloat16, False), clip_grad=1.0,
                        ctx=Context(0, 1, torch.device("cpu")), desc="nan")
    assert float(model.weight) == 1.0  # no step was taken on the NaN
