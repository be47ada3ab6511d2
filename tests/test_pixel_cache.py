"""data.pixel_cache: a run's photos decoded once, served byte for byte, never stale."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data.image_folder as image_folder
from data import DataError, ImageFolder, imagenet_preprocess, load_image, pixel_cache, preprocess_files, preprocess_image
from benchmarks.report.build import _init_worker

SPEC = imagenet_preprocess(16)


def photo(path: Path, seed: int, size: tuple[int, int] = (120, 90)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every load_image call of data.image_folder, as (path, min_side)."""
    calls = []

    def counting(path, min_side=None):
        calls.append((Path(path).name, min_side))
        return load_image(path, min_side)
    monkeypatch.setattr(image_folder, "load_image", counting)
    return calls


def test_second_read_comes_from_the_cache_and_equals_a_decode(tmp_path: Path, decodes: list) -> None:
    files = [photo(tmp_path / "photos" / f"p{i}.jpg", i) for i in range(3)]
    whole = np.stack([preprocess_image(load_image(f), SPEC) for f in files])
    with pixel_cache.shared_cache(tmp_path) as folder:
        first = preprocess_files(files, SPEC)
        second = preprocess_files(files, SPEC)
        assert len(list(folder.glob("*.npy"))) == 3
    assert decodes == [("p0.jpg", None), ("p1.jpg", None), ("p2.jpg", None)]  # the second pass decoded nothing
    np.testing.assert_array_equal(first, whole)
    np.testing.assert_array_equal(second, whole)
    assert not folder.exists() and pixel_cache.folder() is None


def test_a_rewritten_file_or_another_geometry_is_decoded_again(tmp_path: Path, decodes: list) -> None:
    path = photo(tmp_path / "p.jpg", 0)
    with pixel_cache.shared_cache(tmp_path):
        before = preprocess_files([path], SPEC)
        photo(path, 1)  # the user replaces the photo in the middle of a run
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        after = preprocess_files([path], SPEC)
        small = preprocess_files([path], SPEC, min_side=32)
        other = preprocess_files([path], imagenet_preprocess(32))
    assert len(decodes) == 4
    np.testing.assert_array_equal(after[0], preprocess_image(load_image(path), SPEC))
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(small[0], preprocess_image(load_image(path, 32), SPEC))
    assert other.shape == (1, 3, 32, 32)


def test_an_unreadable_entry_is_decoded_again_and_errors_stay_the_same(tmp_path: Path, decodes: list) -> None:
    path = photo(tmp_path / "p.jpg", 0)
    with pixel_cache.shared_cache(tmp_path) as folder:
        preprocess_files([path], SPEC)
        for entry in folder.glob("*.npy"):
            entry.write_bytes(b"torn")
        again = preprocess_files([path], SPEC)
        with pytest.raises(DataError, match="cannot read image"):
            preprocess_files([tmp_path / "gone.jpg"], SPEC)
    assert decodes == [("p.jpg", None), ("p.jpg", None), ("gone.jpg", None)]
    np.testing.assert_array_equal(again[0], preprocess_image(load_image(path), SPEC))


def test_folder_datasets_use_it_and_report_workers_inherit_it(tmp_path: Path, decodes: list) -> None:
    for c, name in enumerate(("cat", "dog")):
        for i in range(2):
            photo(tmp_path / "tree" / name / f"{name}{i}.jpg", 10 * c + i)
    dataset = ImageFolder(tmp_path / "tree", split="all", spec=SPEC)
    with pixel_cache.shared_cache(tmp_path) as folder:
        first = [dataset[i][0].numpy() for i in range(len(dataset))]
        second = [dataset[i][0].numpy() for i in range(len(dataset))]
        _init_worker(None, folder)  # what a spawned build worker runs first
        assert pixel_cache.folder() == folder
    assert len(decodes) == 4
    for a, b, (path, _) in zip(first, second, dataset.samples):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, preprocess_image(load_image(path), SPEC))
