"""What the demos say on full-size photos (benchmarks/photos.py), and the shipped photos it reads by default."""
import json
import re
import shutil

import pytest

from benchmarks import photos
from common.defaults import CIFAR10_CHECKPOINT, FASHION_MNIST_CHECKPOINT
from data.cifar10 import CLASSES as CIFAR10_LABELS


def shipped_files() -> set[str]:
    return {str(p.relative_to(photos.SHIPPED_PHOTOS)) for p in photos.SHIPPED_PHOTOS.rglob("*")
            if p.is_file() and p.name != "README.md"}


def test_every_shipped_photo_has_its_source_and_licence_and_a_class():
    listed = re.findall(r"^\| `([^`]+)` \| [^|]+ \| [^|]+ \| [^|]+ \|$",
                        (photos.SHIPPED_PHOTOS / "README.md").read_text(), re.M)
    assert sorted(listed) == sorted(shipped_files()) and len(listed) == len(set(listed))
    for name in listed:
        assert name.startswith("other/") or name.split("/")[1] in CIFAR10_LABELS, name


def test_shipped_model_names_real_photos_of_its_classes(tmp_path, capsys):
    """The default model's figures on the shipped photos (fp32, every CPU alike; margins of two photos)."""
    out = tmp_path / "photos.json"
    assert photos.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    by_name = {row["photo"]: row for row in result["photos"]}
    assert len(by_name) == len(shipped_files())
    for dog in ("dog-farm.webp", "chicky-opencv.png"):  # neither dog is in CIFAR-10; both are named
        assert by_name[dog]["verdict"] == "named" and by_name[dog]["probability"] > 0.7, by_name[dog]
    mine, other = result["summary"]["its_classes"], result["summary"]["other_things"]
    assert mine["named"]["n"] == 19 and round(mine["named"]["share"] * 19) >= 6
    assert round(mine["wrong"]["share"] * 19) <= 4
    assert other["not sure"]["n"] == 40 and round(other["not sure"]["share"] * 40) >= 13
    text = capsys.readouterr().out
    assert "photos of its classes: named" in text and "knows airplane, automobile" in text

    assert photos.main(["--json", str(out)]) == 2  # an existing file is kept without --force
    assert "--force" in capsys.readouterr().err


def test_a_folder_of_ones_own_photos(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "dog").mkdir(parents=True)
    shutil.copy(photos.SHIPPED_PHOTOS / "cifar10" / "dog" / "dog-farm.webp", mine / "dog" / "rex.webp")
    (mine / "dog" / "notes.txt").write_text("not a photo")
    assert photos.main([str(CIFAR10_CHECKPOINT), "--photos", str(mine)]) == 0
    out = capsys.readouterr().out
    assert "rex.webp" in out and "named 1 of 1" in out and "other things: not sure no photos" in out


@pytest.mark.parametrize("case, needle", [
    ("not a class", "sub-folder 'puppy' is not one of the model's classes"),
    ("missing folder", "is not a folder"),
    ("empty folder", "no photos found"),
    ("not cifar-10", "is not a CIFAR-10 model: pass --photos"),
    ("damaged photo", "cannot read image"),
])
def test_bad_input_is_one_line_exit_2(case, needle, tmp_path, capsys):
    args = {"not a class": ["--photos", str(tmp_path)], "missing folder": ["--other", str(tmp_path / "nope")],
            "empty folder": ["--other", str(tmp_path)], "not cifar-10": [str(FASHION_MNIST_CHECKPOINT)],
            "damaged photo": ["--other", str(tmp_path)]}[case]
    if case == "not a class":
        (tmp_path / "puppy").mkdir()
    if case == "damaged photo":
        (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert photos.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit) as usage:
        photos.main(["--threads", "0"])
    assert usage.value.code == 2 and "--threads: expected a positive integer" in capsys.readouterr().err


def test_a_wrong_folder_name_for_an_imagenet_model_is_one_short_line(tmp_path, capsys):
    from model import create_model, save_checkpoint
    from data.imagenet import imagenet_labels
    model = create_model("shunted_nano", input_size=32, labels=imagenet_labels())  # random weights
    weights = save_checkpoint(tmp_path / "imagenet.pt", model, {**model.meta, "random_weights": True})
    (tmp_path / "photos" / "dog").mkdir(parents=True)
    assert photos.main([str(weights), "--photos", str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'dog' is not one of the model's classes (tench, goldfish" in err and "(1000 in all)" in err
    assert len(err) < 300 and "\n" not in err
