"""Tests for the data package on synthetic IDX files and image folders (plus the installed Fashion-MNIST)."""
from __future__ import annotations

import gzip
import io
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import (DataError, FASHION_MNIST_CLASSES, FashionMNIST, ImageFolder, build_dataset,
                  fashion_mnist_preprocess, imagenet_preprocess, load_image, preprocess_batch,
                  preprocess_image, validate_preprocess)
from data.augment import TRIVIAL_OPS, decode_side, epoch_uniforms, pad_crop_flip, scale_crop_flip, trivial_augment

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SMALL_SPEC = imagenet_preprocess(16)  # resize 18, crop 16, bicubic


# ---------------------------------------------------------------- helpers

def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data += array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_fashion(folder: Path, gz: bool, n_train: int = 200, n_test: int = 50) -> Path:
    """IDX files whose images encode their index in pixels (0, 0) and (0, 1)."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return folder


def source_indices(ds: FashionMNIST) -> list[int]:
    return (ds.images[:, 0, 0].astype(int) * 256 + ds.images[:, 0, 1]).tolist()


def save_image(path: Path, seed: int, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).convert(mode).save(path)


def make_classes(root: Path, per_class: int, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    formats = ("png", "jpg", "bmp", "tiff", "gif")
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_image(root / name / f"img{i:02d}.{formats[i % len(formats)]}", seed=100 * c + i)
    return root


@pytest.fixture(params=[True, False], ids=["gz", "raw"])
def fashion_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    return make_fashion(tmp_path / "fmnist", gz=request.param)


# ---------------------------------------------------------------- preprocessing

def test_specs_match_conventions_and_survive_json_and_torch_load(tmp_path: Path) -> None:
    spec = imagenet_preprocess(224)
    assert (spec["resize"], spec["crop"], spec["interpolation"], spec["grayscale"]) == (256, 224, "bicubic", False)
    fm = fashion_mnist_preprocess(32)
    assert (fm["resize"], fm["crop"], fm["interpolation"], fm["grayscale"]) == (32, 32, "bilinear", True)
    assert fm["mean"] == [0.2860] * 3 and fm["std"] == [0.3530] * 3
    for s in (spec, fm):
        assert validate_preprocess(json.loads(json.dumps(s))) == s
        torch.save({"preprocess": s}, tmp_path / "ckpt.pt")
        assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["preprocess"] == s


@pytest.mark.parametrize("change, key", [
    ({"mean": [0.5, 0.5]}, "mean"), ({"std": [0.2, 0.0, 0.2]}, "std"), ({"resize": 200}, "resize"),
    ({"crop": 1.5}, "crop"), ({"interpolation": "nearest"}, "interpolation"),
    ({"grayscale": 1}, "grayscale"), ({"channel_order": "BGR"}, "channel_order"), ({"colour": 1}, "colour"),
])
def test_validate_preprocess_names_the_bad_key(change: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        validate_preprocess({**imagenet_preprocess(224), **change})
    spec = imagenet_preprocess(224)
    del spec["mean"]
    with pytest.raises(ValueError, match="missing keys \\['mean'\\]"):
        validate_preprocess(spec)


def test_normalization_values() -> None:
    out = preprocess_image(np.full((28, 28), 255, np.uint8), fashion_mnist_preprocess(28))
    assert out.shape == (3, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out, (1 - 0.2860) / 0.3530, rtol=1e-6)
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[...] = (255, 0, 51)
    out = preprocess_image(rgb, SMALL_SPEC)
    expected = (np.array([1.0, 0.0, 0.2]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), expected, rtol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 0, atol=1e-5)


def test_resize_shorter_side_then_center_crop() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 61, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((36, 18), Image.Resampling.BICUBIC).crop((10, 1, 26, 17)))
    out = preprocess_image(image, SMALL_SPEC)  # 61x30 -> 36x18 (36.6 truncated), center 16x16
    restored = out * np.array(SMALL_SPEC["std"])[:, None, None] + np.array(SMALL_SPEC["mean"])[:, None, None]
    np.testing.assert_allclose(restored.transpose(1, 2, 0) * 255, expected, atol=1e-3)


def test_grey_input_is_replicated_to_three_channels() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (20, 24), dtype=np.uint8)
    out = preprocess_image(grey, SMALL_SPEC)
    std, mean = (np.array(SMALL_SPEC[k])[:, None, None] for k in ("std", "mean"))
    restored = out * std + mean
    np.testing.assert_allclose(restored[0], restored[1], atol=1e-6)
    np.testing.assert_allclose(restored[0], restored[2], atol=1e-6)
    np.testing.assert_array_equal(out, preprocess_image(Image.fromarray(grey), SMALL_SPEC))
    np.testing.assert_array_equal(out, preprocess_image(np.stack([grey] * 3, -1), SMALL_SPEC))


def test_grayscale_spec_turns_colour_grey() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    spec = fashion_mnist_preprocess(28)
    out = preprocess_image(rgb, spec)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(out, preprocess_image(grey, spec))
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_bgr_arrays_are_reordered() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    expected = preprocess_image(rgb, SMALL_SPEC)
    np.testing.assert_array_equal(preprocess_image(bgr, SMALL_SPEC, color_order="BGR"), expected)
    assert not np.allclose(preprocess_image(bgr, SMALL_SPEC, color_order="RGB"), expected)
    np.testing.assert_array_equal(preprocess_image(Image.fromarray(rgb), SMALL_SPEC), expected)


def test_preprocess_batch_stacks_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8) for i in range(3)]
    batch = preprocess_batch(images, SMALL_SPEC)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[2], preprocess_image(images[2], SMALL_SPEC))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(images[0].astype(np.float32), SMALL_SPEC)
    with pytest.raises(ValueError, match="color_order"):
        preprocess_image(images[0], SMALL_SPEC, color_order="RBG")


# ---------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_items_and_splits(fashion_dir: Path) -> None:
    train = FashionMNIST(fashion_dir, "train")
    val = FashionMNIST(fashion_dir, "val")
    test = FashionMNIST(fashion_dir, "test")
    assert (len(train), len(val), len(test)) == (180, 20, 50)
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == (3, 28, 28) and isinstance(y, int)
    assert train.classes == FASHION_MNIST_CLASSES and train.classes[9] == "Ankle boot"
    assert np.bincount(val.targets).tolist() == [2] * 10  # stratified 10 %
    train_idx, val_idx = source_indices(train), source_indices(val)
    assert not set(train_idx) & set(val_idx) and len(set(train_idx) | set(val_idx)) == 200
    assert [i % 10 for i in train_idx] == train.targets
    assert source_indices(FashionMNIST(fashion_dir, "val", seed=7)) == val_idx  # split ignores seed
    assert source_indices(FashionMNIST(fashion_dir, "val", split_seed=1)) != val_idx
    assert source_indices(test) == list(range(50))


def test_fashion_mnist_limit_is_seeded_subset(fashion_dir: Path) -> None:
    full = set(source_indices(FashionMNIST(fashion_dir, "train")))
    a = source_indices(FashionMNIST(fashion_dir, "train", limit=16, seed=3))
    assert len(a) == 16 and set(a) <= full and a != sorted(a)
    assert a == source_indices(FashionMNIST(fashion_dir, "train", limit=16, seed=3))
    assert a != source_indices(FashionMNIST(fashion_dir, "train", limit=16, seed=4))
    assert len(FashionMNIST(fashion_dir, "test", limit=1000)) == 50
    with pytest.raises(DataError, match="limit"):
        FashionMNIST(fashion_dir, "test", limit=0)


def test_fashion_mnist_location_sources(fashion_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(build_dataset(f"fashion-mnist:{fashion_dir}", "test", None)) == 50
    monkeypatch.setenv("FASHION_MNIST_DIR", str(fashion_dir))
    assert len(build_dataset("fashion-mnist", "test", fashion_mnist_preprocess(28))) == 50


@pytest.mark.parametrize("input_size", [28, 32])
@pytest.mark.parametrize("train", [False, True])
def test_fast_path_equals_per_item(fashion_dir: Path, input_size: int, train: bool) -> None:
    ds = FashionMNIST(fashion_dir, "val", fashion_mnist_preprocess(input_size), train=train, seed=5)
    ds.set_epoch(2)
    images, labels = ds.as_tensor()
    assert images.shape == (20, 3, input_size, input_size) and images.dtype == torch.float32
    per_item = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.testing.assert_close(images, per_item, atol=1e-5, rtol=0)
    assert labels.tolist() == ds.targets


def test_fashion_augmentation_is_seeded_per_epoch(fashion_dir: Path) -> None:
    def epoch_images(seed: int, epoch: int) -> torch.Tensor:
        ds = FashionMNIST(fashion_dir, "val", train=True, seed=seed)
        ds.set_epoch(epoch)
        return torch.stack([ds[i][0] for i in range(len(ds))])

    plain = FashionMNIST(fashion_dir, "val").as_tensor()[0]
    first = epoch_images(0, 0)
    assert first.shape == plain.shape
    assert torch.equal(first, epoch_images(0, 0))
    assert not torch.equal(first, epoch_images(0, 1))
    assert not torch.equal(first, epoch_images(1, 0))
    assert not torch.equal(first, plain)


def test_pad_crop_flip_offsets_and_flip() -> None:
    pixels = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    centred = pad_crop_flip(pixels, 2, np.array([[0.5, 0.5, 0.9], [0.5, 0.5, 0.1]]))
    np.testing.assert_array_equal(centred[0], pixels[0])
    np.testing.assert_array_equal(centred[1], pixels[1, :, ::-1])
    shifted = pad_crop_flip(pixels, 2, np.array([[0.0, 0.99, 0.9]] * 2))
    np.testing.assert_array_equal(shifted[0, 2:, :2], pixels[0, :2, 2:])
    assert not shifted[0, :2].any() and not shifted[0, :, 2:].any()


def test_missing_fashion_mnist_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found in .*apt-get install -y dataset-fashion-mnist.*"
                                        r"train-images-idx3-ubyte\[\.gz\]"):
        FashionMNIST(tmp_path, "train")
    make_fashion(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        FashionMNIST(tmp_path, "test")


@pytest.mark.parametrize("damage", ["magic", "truncated", "gzip", "count"])
def test_corrupt_idx_files(tmp_path: Path, damage: str) -> None:
    make_fashion(tmp_path, gz=False)
    images = tmp_path / "t10k-images-idx3-ubyte"
    if damage == "magic":
        images.write_bytes(b"\0\0\x08\x01" + images.read_bytes()[4:])
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:-5])
    elif damage == "gzip":
        images.unlink()
        images.with_suffix(".gz").write_bytes(b"\x1f\x8b not really gzip")
    else:
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(49, np.uint8), gz=False)
    with pytest.raises(DataError, match="corrupt"):
        FashionMNIST(tmp_path, "test")


def test_bad_split_and_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'validation'"):
        build_dataset(f"fashion-mnist:{tmp_path}", "validation", None)
    with pytest.raises(DataError, match="not a folder"):
        build_dataset(tmp_path / "nowhere", "val", None)


@pytest.mark.skipif(not (REAL_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_installed_fashion_mnist() -> None:
    test = build_dataset("fashion-mnist", "test", fashion_mnist_preprocess(28))
    assert len(test) == 10_000 and np.bincount(test.targets).tolist() == [1000] * 10
    images, labels = test.as_tensor()
    assert images.shape == (10_000, 3, 28, 28)
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    assert len(build_dataset("fashion-mnist", "val", None)) == 6_000


# ---------------------------------------------------------------- image folders

def test_image_folder_skips_bad_files_with_one_warning(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "imgs", per_class=5, classes=("dog", "cat"))
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (root / "dog" / "notes.txt").write_text("hello")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolder(root, "all", SMALL_SPEC)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 2 " in messages[0]
    assert ds.classes == ["cat", "dog"] and len(ds) == 10 and ds.skipped == 2
    assert ds.targets == [0] * 5 + [1] * 5
    x, y = ds[7]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16) and y == 1
    np.testing.assert_array_equal(x.numpy(), preprocess_image(load_image(ds.samples[7][0]), SMALL_SPEC))


def test_image_folder_seeded_stratified_split(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "imgs", per_class=10)
    parts = {s: [p for p, _ in ImageFolder(root, s, SMALL_SPEC).samples] for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert len(set().union(*parts.values())) == 20
    assert [p for p, _ in ImageFolder(root, "val", SMALL_SPEC, seed=9).samples] == parts["val"]
    assert sorted(Path(p).parent.name for p in parts["val"]) == ["cat", "dog"]
    other = {s: [p for p, _ in ImageFolder(root, s, SMALL_SPEC, split_seed=1).samples] for s in ("val", "test")}
    assert other != {s: parts[s] for s in ("val", "test")}
    assert len(ImageFolder(root, "train", SMALL_SPEC, limit=3).samples) == 3


def test_image_folder_uses_split_subfolders(tmp_path: Path) -> None:
    make_classes(tmp_path / "train", per_class=3, classes=("a", "b", "c"))
    make_classes(tmp_path / "val", per_class=2, classes=("b", "c"))
    val = build_dataset(tmp_path, "val", SMALL_SPEC)
    assert val.classes == ["a", "b", "c"] and val.targets == [1, 1, 2, 2]
    assert len(build_dataset(tmp_path, "train", SMALL_SPEC)) == 9
    assert len(build_dataset(tmp_path, "test", SMALL_SPEC)) == 4  # falls back to val/
    with pytest.raises(DataError, match="split sub-folders"):
        ImageFolder(tmp_path, "all", SMALL_SPEC)
    make_classes(tmp_path / "val", per_class=1, classes=("zebra",))
    with pytest.raises(DataError, match="zebra"):
        ImageFolder(tmp_path, "val", SMALL_SPEC)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no images found in .*one sub-folder per class \(ImageNet layout\)"):
        build_dataset(tmp_path, "train", SMALL_SPEC)
    save_image(tmp_path / "loose.png", seed=0)
    with pytest.raises(DataError, match="no images found"):
        ImageFolder(tmp_path, "all", SMALL_SPEC)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images found"):
        ImageFolder(tmp_path, "all", SMALL_SPEC)
    for name in ("IMG_0001.HEIC", "IMG_0002.heic", "notes.txt"):  # an iPhone's photos, unconverted
        (tmp_path / "empty_class" / name).write_bytes(b"ftypheic")
    with pytest.raises(DataError, match=r"no readable images in .*: 3 non-image or corrupt files such as "
                                        r".*IMG_0001.HEIC; HEIC photos \(2 of them\).*convert to JPEG first"):
        ImageFolder(tmp_path, "all", SMALL_SPEC)


def test_load_image(tmp_path: Path) -> None:
    save_image(tmp_path / "grey.png", seed=0, mode="L")
    image = load_image(tmp_path / "grey.png")
    assert image.mode == "RGB" and image.size == (24, 20)
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image .*bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="cannot read image"):
        load_image(tmp_path / "missing.png")


DISPLAYED = {1: lambda a: a, 3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1),
             8: lambda a: np.rot90(a, 1)}  # EXIF orientations cameras write: how the photo is shown


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_image_is_upright_like_the_demos(tmp_path: Path, orientation: int) -> None:
    """A phone photo's EXIF orientation is applied, so training, calibration and verification see it
    as the demos (OpenCV) and browsers show it, not lying on its side."""
    import cv2
    stored = np.full((48, 96, 3), 128, np.uint8)
    stored[:16, :32] = (230, 30, 30)  # a red corner tells every rotation and mirroring apart
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo-{orientation}.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=100)
    seen = np.asarray(load_image(path)).astype(int)
    demo = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].astype(int)
    assert seen.shape == demo.shape == ((48, 96, 3) if orientation < 5 else (96, 48, 3))
    assert np.abs(seen - demo).mean() < 1
    if orientation in DISPLAYED:
        assert np.abs(seen - DISPLAYED[orientation](stored)).mean() < 2


def test_load_image_reads_16_bit_grey_like_the_demos(tmp_path: Path) -> None:
    import cv2
    grey = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey)
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")
    seen = np.asarray(load_image(tmp_path / "grey16.png"))
    np.testing.assert_array_equal(seen, cv2.imread(str(tmp_path / "grey16.png"), cv2.IMREAD_COLOR))
    assert (seen == 255).mean() < 0.01  # not clipped to white


def test_image_folder_augmentation(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "imgs", per_class=4)

    def items(seed: int, epoch: int) -> torch.Tensor:
        ds = ImageFolder(root, "all", SMALL_SPEC, train=True, seed=seed)
        ds.set_epoch(epoch)
        return torch.stack([ds[i][0] for i in range(len(ds))])

    first = items(0, 0)
    assert first.shape == (8, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, items(0, 0))
    assert not torch.equal(first, items(0, 1)) and not torch.equal(first, items(2, 0))
    plain = torch.stack([x for x, _ in ImageFolder(root, "all", SMALL_SPEC)])
    assert not torch.equal(first, plain)


def test_training_decodes_camera_jpegs_smaller(tmp_path: Path) -> None:
    """A camera JPEG is decoded at a DCT scale for training crops (5.9x faster at 12 MP, 224 px):
    smaller, still upright, and the training item within a level of the one from a full decode."""
    photo = Path(__file__).resolve().parents[1] / "data/photos/cifar10/dog/dog-farm.webp"
    dog = Image.open(photo).convert("RGB").resize((1600, 1200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown rotated: a phone's portrait shot
    (tmp_path / "dog").mkdir()
    dog.save(tmp_path / "dog/photo.jpg", exif=exif.tobytes(), quality=90)
    dog.save(tmp_path / "dog/photo.png")
    side = decode_side(SMALL_SPEC)
    full, small = load_image(tmp_path / "dog/photo.jpg"), load_image(tmp_path / "dog/photo.jpg", side)
    assert full.size == (1200, 1600) and small.size == (150, 200) and min(small.size) >= side
    assert load_image(tmp_path / "dog/photo.png", side).size == (1600, 1200)  # other formats: whole
    folder = ImageFolder(tmp_path, "all", SMALL_SPEC, train=True, seed=3)
    draws = epoch_uniforms(3, 0, len(folder), 4)
    for index, (path, _) in enumerate(folder.samples):
        item = folder[index][0].numpy()
        exact = scale_crop_flip(load_image(path), SMALL_SPEC, draws[index])
        levels = np.abs(item - exact) * np.array(SMALL_SPEC["std"])[:, None, None] * 255
        assert levels.mean() < 1, (path, levels.mean())


def test_scale_crop_flip_ends_in_spec_normalization() -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    kept = scale_crop_flip(image, SMALL_SPEC, np.array([0.0, 0.5, 0.5, 0.9]))  # side = crop: no resize
    np.testing.assert_array_equal(kept, preprocess_image(image, {**SMALL_SPEC, "resize": 16}))
    flipped = scale_crop_flip(image, SMALL_SPEC, np.array([0.0, 0.5, 0.5, 0.1]))
    np.testing.assert_array_equal(flipped, kept[..., ::-1])
    zoomed = scale_crop_flip(image, SMALL_SPEC, np.array([0.99, 0.0, 0.0, 0.9]))
    assert zoomed.shape == (3, 16, 16) and not np.array_equal(zoomed, kept)


def test_image_folder_webp_when_supported(tmp_path: Path) -> None:
    from PIL import features
    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    save_image(tmp_path / "k" / "a.webp", seed=0)
    assert len(ImageFolder(tmp_path, "all", SMALL_SPEC)) == 1


def test_encoded_jpeg_roundtrip_through_loader(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(buffer, "JPEG", quality=95)
    (tmp_path / "red.jpg").write_bytes(buffer.getvalue())
    out = preprocess_image(load_image(tmp_path / "red.jpg"), SMALL_SPEC)
    assert out[0].mean() > 1.0 and out[1].mean() < -1.5


# ---------------------------------------------------------------- CIFAR-10

def make_cifar(root: Path, per_class: int = 3, archive: bool = False) -> Path:
    """A CIFAR-10-layout folder (or .tar.gz of it) of random 32x32 JPEGs, ``per_class`` per split."""
    from data.cifar10 import CLASSES
    rng = np.random.default_rng(0)
    folder = root / "cifar"
    for split in ("train", "test"):
        for cls in CLASSES:
            (folder / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    folder / split / cls / f"{i:04d}.jpg", quality=95)
    if not archive:
        return folder
    import tarfile
    path = root / "cifar.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(folder / split, arcname=split)
    return path


def test_cifar10_archive_and_folder_read_the_same(tmp_path: Path) -> None:
    from data.cifar10 import load_cifar10
    folder = make_cifar(tmp_path, per_class=10)
    archive = make_cifar(tmp_path / "a", per_class=10, archive=True)
    for split in ("train", "test"):
        a, b = load_cifar10(folder, split), load_cifar10(archive, split)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[0].shape == (100, 32, 32, 3) and np.bincount(a[1]).tolist() == [10] * 10
    train = build_dataset(f"cifar10:{archive}", "train", None)
    val = build_dataset(f"cifar10:{archive}", "val", None)
    assert (len(train), len(val), len(build_dataset(f"cifar10:{archive}", "test", None))) == (90, 10, 100)
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10


def test_cifar10_augmentation_is_seeded_and_keeps_colour(tmp_path: Path) -> None:
    folder = make_cifar(tmp_path)
    first = build_dataset(f"cifar10:{folder}", "train", None, train=True, seed=1)
    again = build_dataset(f"cifar10:{folder}", "train", None, train=True, seed=1)
    assert torch.equal(first[3][0], again[3][0])
    first.set_epoch(1)
    assert not torch.equal(first[3][0], again[3][0])  # another epoch, other crops
    crops = first.pixels(slice(None))
    assert crops.shape == first.images.shape  # random crop with padding keeps 32x32x3


def test_cifar10_trivial_augment_keeps_crops_and_is_seeded(tmp_path: Path) -> None:
    folder = make_cifar(tmp_path, per_class=10)
    def pixels(augment: str, seed: int = 1, epoch: int = 2) -> np.ndarray:
        ds = build_dataset(f"cifar10:{folder}", "train", None, train=True, seed=seed, augment=augment)
        ds.set_epoch(epoch)
        return ds.pixels(slice(None))
    crops, trivial = pixels("crop-flip"), pixels("trivial")
    assert trivial.shape == crops.shape and trivial.dtype == np.uint8
    np.testing.assert_array_equal(trivial, pixels("trivial"))  # seeded: the same draws every time
    changed = (trivial != crops).any(axis=(1, 2, 3))
    assert 0.5 < changed.mean() < 1.0  # most images changed; identity and no-op draws leave some as they were
    assert not np.array_equal(trivial, pixels("trivial", epoch=3))
    # the crop-flip draws are those of a run without trivial_augment (stream 0 untouched)
    ds = build_dataset(f"cifar10:{folder}", "train", None, train=True, seed=1)
    ds.set_epoch(2)
    np.testing.assert_array_equal(crops, pad_crop_flip(ds.images, 4, epoch_uniforms(1, 2, len(ds.images), 3)))


@pytest.mark.parametrize("op", range(len(TRIVIAL_OPS)))
def test_every_trivial_op_keeps_shape_on_colour_and_grey(op: int) -> None:
    rng = np.random.default_rng(op)
    for shape in [(32, 32, 3), (28, 28)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        for u in ([op / len(TRIVIAL_OPS) + 1e-6, 0.7, 0.2], [op / len(TRIVIAL_OPS) + 1e-6, 1.0, 0.9]):
            out = trivial_augment(pixels, np.array(u))
            assert out.shape == shape and out.dtype == np.uint8


def test_val_fraction_zero_trains_on_every_image(tmp_path: Path) -> None:
    archive = f"cifar10:{make_cifar(tmp_path, per_class=10)}"
    assert len(build_dataset(archive, "train", None, val_fraction=0)) == 100
    assert len(build_dataset(archive, "val", None, val_fraction=0)) == 0
    assert len(build_dataset(archive, "val", None, val_fraction=0.2)) == 20
    for bad in ({"val_fraction": 1.0}, {"val_fraction": -0.1}, {"augment": "autoaugment"}):
        with pytest.raises(DataError, match=next(iter(bad))):
            build_dataset(archive, "train", None, **bad)
    with pytest.raises(DataError, match="keeps its own split"):
        build_dataset(str(tmp_path), "train", None, augment="trivial")


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("not cifar", "no CIFAR-10 test split"), ("wrong size", "not 32x32"),
    ("damaged archive", "not a readable CIFAR-10 archive")])
def test_cifar10_bad_sources_say_what_to_pass(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "x"
    if case == "not cifar":
        (path / "test" / "tiger").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(path / "test" / "tiger" / "0.jpg")
    elif case == "wrong size":
        (path / "test" / "cat").mkdir(parents=True)
        Image.new("RGB", (64, 48)).save(path / "test" / "cat" / "0.jpg")
    elif case == "damaged archive":
        path = tmp_path / "x.tar.gz"
        path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=message):
        build_dataset(f"cifar10:{path}", "test", None)


def test_shipped_cifar10_subset_is_the_whole_test_split() -> None:
    from data.cifar10 import SHIPPED, load_cifar10
    images, labels = load_cifar10(SHIPPED, "test")
    assert images.shape == (10_000, 32, 32, 3) and np.bincount(labels).tolist() == [1_000] * 10
    train_images, train_labels = load_cifar10(SHIPPED, "train")
    assert np.bincount(train_labels).tolist() == [250] * 10


def test_scene_free_images_fill_the_frame():
    """Every generated picture is size x size RGB, and the three kinds (noise, smooth field, gradient) differ
    in how much neighbouring pixels vary (a gradient changes by at most a couple of levels per pixel)."""
    from data.synthetic import scene_free_images
    images = [np.asarray(image, dtype=float) for image in scene_free_images(6, size=48, seed=3)]
    assert {image.shape for image in images} == {(48, 48, 3)}
    steps = [np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean() for image in images]
    assert steps[0] > 40 and steps[3] > 40 and max(steps[2], steps[5]) < 4
