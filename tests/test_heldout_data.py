"""The held-out texture data set: one folder per class, reproducible from its seed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.heldout_data import CLASSES, main, write_patterns


def _pixels(root):
    return {p.relative_to(root).as_posix(): np.asarray(Image.open(p))
            for p in sorted(root.rglob("*.png"))}


def test_every_class_gets_its_pictures_and_a_seed_gives_the_same_set(tmp_path, capsys):
    assert main([str(tmp_path / "a"), "--per-class", "2", "--seed", "3"]) == 0
    assert "6 classes × 2 pictures" in capsys.readouterr().out
    a = _pixels(tmp_path / "a")
    assert sorted(a) == [f"{c}/{n:04d}.png" for c in CLASSES for n in range(2)]
    assert all(x.shape == (128, 128, 3) and x.dtype == np.uint8 for x in a.values())
    assert len({x.tobytes() for x in a.values()}) == len(a)  # no two pictures alike
    write_patterns(tmp_path / "b", 2, seed=3)
    b = _pixels(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    write_patterns(tmp_path / "c", 2, seed=4)
    assert not any(np.array_equal(a[k], v) for k, v in _pixels(tmp_path / "c").items())


def test_a_bad_count_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path), "--per-class", "0"]) == 2
    assert "--per-class" in capsys.readouterr().err
