"""Data discovery and splitting: both layouts, messy folders, and every clear error."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from edge_runtime.image import load_image
from tests.helpers import class_folder, save_rgb
from train.data_sources import fetch_cats_vs_dogs
from train.splits import Splits, discover


def test_class_folders_are_split_stratified_and_reproducibly(tmp_path):
    root = class_folder(tmp_path / "data", {"cat": 20, "dog": 10})
    splits = discover(root, val_split=0.2, test_split=0.1, seed=7)
    assert splits.layout == "class_folders"
    assert splits.classes == ["cat", "dog"]
    for split, (cats, dogs) in {"train": (14, 7), "val": (4, 2), "test": (2, 1)}.items():
        labels = splits.labels[split]
        assert (labels.count(0), labels.count(1)) == (cats, dogs), split
    every = sum((splits.files[s] for s in ("train", "val", "test")), [])
    assert len(every) == len(set(every)) == 30
    assert all(f.split("/")[0] == splits.classes[k]
               for s in ("train", "val", "test") for f, k in zip(splits.files[s], splits.labels[s]))
    assert discover(root, 0.2, 0.1, seed=7).files == splits.files
    assert discover(root, 0.2, 0.1, seed=8).files != splits.files


def test_train_validation_layout_moves_a_fifth_of_validation_to_test(tmp_path):
    root = tmp_path / "cats_and_dogs_filtered"
    class_folder(root / "train", {"cats": 6, "dogs": 6})
    class_folder(root / "validation", {"cats": 5, "dogs": 5})
    splits = discover(root)
    assert splits.layout == "split_folders"
    assert splits.count("train") == 12
    assert (splits.count("val"), splits.count("test")) == (8, 2)
    assert all(f.startswith("validation/") for f in splits.files["test"])


def test_explicit_val_and_test_folders_are_used_as_they_are(tmp_path):
    class_folder(tmp_path / "train", {"a": 3, "b": 3})
    class_folder(tmp_path / "val", {"a": 2, "b": 2})
    class_folder(tmp_path / "test", {"a": 1, "b": 1})
    splits = discover(tmp_path)
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (6, 4, 2)


def test_messy_folder_every_format_and_mode_becomes_rgb(tmp_path):
    root = tmp_path / "data"
    a, b = root / "a", root / "b"
    save_rgb(a / "upper.JPG")
    save_rgb(a / "mixed.JpEg", fmt="JPEG")
    save_rgb(a / "x.PNG")
    save_rgb(a / "x.bmp")
    save_rgb(a / "x.webp")
    save_rgb(a / "x.gif")
    b.mkdir()
    Image.fromarray(np.full((20, 30), 90, np.uint8), "L").save(b / "grey.png")
    Image.new("RGBA", (30, 20), (10, 20, 30, 0)).save(b / "rgba.png")
    Image.new("P", (30, 20), 3).save(b / "palette.png")
    Image.fromarray(np.full((20, 30), 65535, np.uint16)).save(b / "deep16.png")
    (b / "sub").mkdir()
    save_rgb(b / "sub" / "nested.jpg")
    splits = discover(root, val_split=0.2, test_split=0.2, seed=0)
    assert splits.skipped == []
    found = {p.name for s in ("train", "val", "test") for p in splits.paths(s)}
    assert found == {"upper.JPG", "mixed.JpEg", "x.PNG", "x.bmp", "x.webp", "x.gif", "grey.png",
                     "rgba.png", "palette.png", "deep16.png", "nested.jpg"}
    for name in ("grey.png", "rgba.png", "palette.png", "deep16.png"):
        image = load_image(b / name)
        assert image.mode == "RGB" and image.size == (30, 20)
    assert load_image(b / "deep16.png").getpixel((0, 0)) == (255, 255, 255)  # scaled, not clipped
    assert load_image(b / "rgba.png").getpixel((0, 0)) == (255, 255, 255)  # transparent → white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.size == (20, 40)
    top = np.asarray(upright)[2, 10]
    assert top[2] > 150 and top[0] < 100  # the blue half is now on top


def test_hidden_corrupt_and_non_image_files_are_skipped_with_reasons(tmp_path):
    root = class_folder(tmp_path / "data", {"a": 5, "b": 5})
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden_class").mkdir()
    save_rgb(root / ".hidden_class" / "x.jpg")
    (root / "a" / "notes.txt").write_text("not a picture")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = (root / "b" / "b_000.jpg").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    splits = discover(root, 0.2, 0.2, seed=0)
    assert splits.classes == ["a", "b"]
    skipped = dict(splits.skipped)
    assert set(skipped) == {"a/notes.txt", "b/broken.jpg", "b/truncated.jpg"}
    assert skipped["a/notes.txt"] == "not an image file type"
    listed = sum((splits.files[s] for s in ("train", "val", "test")), [])
    assert len(listed) == 10 and not any("broken" in f or "truncated" in f for f in listed)


def test_splits_json_round_trip(tmp_path):
    splits = discover(class_folder(tmp_path / "d", {"a": 5, "b": 5}), 0.2, 0.2, seed=0)
    splits.save(tmp_path / "splits.json")
    data = json.loads((tmp_path / "splits.json").read_text())
    assert {"root", "train", "val", "test"} <= set(data)
    again = Splits.load(tmp_path / "splits.json")
    assert again.files == splits.files and again.labels == splits.labels
    assert again.root == splits.root and again.classes == splits.classes


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: class_folder(root, {"only": 3}), "at least 2 class folders"),
    (lambda root: (class_folder(root, {"a": 3}), (root / "empty").mkdir()), "has no usable image"),
    (lambda root: (class_folder(root, {"a": 3}), (root / "bad").mkdir(),
                   (root / "bad" / "x.jpg").write_bytes(b"garbage")), "has no usable image"),
    (lambda root: class_folder(root, {"a": 10, "b": 2}), "no image in the train split"),
])
def test_unusable_data_gives_one_clear_error(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message) as info:
        discover(root, 0.2, 0.1, seed=0)
    assert "\n" not in str(info.value)


def test_cats_vs_dogs_is_downloaded_and_extracted_with_keras(tmp_path, monkeypatch):
    source = tmp_path / "src" / "cats_and_dogs_filtered"
    class_folder(source / "train", {"cats": 4, "dogs": 4})
    class_folder(source / "validation", {"cats": 5, "dogs": 5})
    archive = tmp_path / "cats_and_dogs_filtered.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(source.rglob("*.jpg")):
            z.write(path, path.relative_to(source.parent).as_posix())
    monkeypatch.setenv("EDGE_CATS_VS_DOGS_URL", archive.as_uri())
    root = fetch_cats_vs_dogs(cache=tmp_path / "cache")
    splits = discover(root)
    assert splits.classes == ["cats", "dogs"] and splits.layout == "split_folders"
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (8, 8, 2)


def test_cats_vs_dogs_download_failure_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_CATS_VS_DOGS_URL", (tmp_path / "missing.zip").as_uri())
    with pytest.raises(DataError, match="cannot download cats_vs_dogs") as info:
        fetch_cats_vs_dogs(cache=tmp_path / "cache")
    assert "\n" not in str(info.value)
