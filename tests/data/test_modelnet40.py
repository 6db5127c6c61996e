"""ModelNet40 HDF5 layout (``modelnet40_ply_hdf5_2048``), on small files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from equirelax.data import modelnet40 as mn

h5py = pytest.importorskip("h5py")

from tests.helpers.fake_modelnet40 import write_fake_modelnet40  # noqa: E402 (after the skip)


def test_reads_the_published_layout_in_file_order(tmp_path) -> None:
    folder = write_fake_modelnet40(tmp_path, {"train": [3, 4, 2], "test": [5]})
    files = mn.find_modelnet40_files(tmp_path)  # the parent of the folder works too
    assert [p.name for p in files["train"]] == [f"ply_data_train{k}.h5" for k in range(3)]
    points, labels = mn.read_modelnet40_h5(files["train"])
    assert points.shape == (9, 2048, 3) and points.dtype == np.float32
    np.testing.assert_array_equal(points[:, 0, 0], np.arange(9))
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2, 3, 0, 1])
    assert mn.find_modelnet40_files(folder) == files


def test_splits_first_points_and_rotations(tmp_path) -> None:
    folder = write_fake_modelnet40(tmp_path)
    data = mn.load_modelnet40(folder, num_points=300, val_fraction=0.25, seed=1)
    assert data.num_classes == 5 and data.class_names[0] == "shape0"
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 10)
    assert data.train.points.shape == (15, 300, 3) and data.protocol == "so3/so3"
    raw_train, _ = mn.read_modelnet40_h5(mn.find_modelnet40_files(folder)["train"])
    raw_test, test_labels = mn.read_modelnet40_h5(mn.find_modelnet40_files(folder)["test"])
    # training clouds as published (the study rotates each batch): the first 300 points
    ids = data.train.points[:, 0, 0].round().long().numpy()
    np.testing.assert_allclose(data.train.points.numpy(), raw_train[ids, :300], atol=1e-6)
    # validation and test clouds rotated: canonical = points @ R gives back the published ones
    seen = {"train": set(ids.tolist())}
    for name, raw, first in (("val", raw_train, 0), ("test", raw_test, 20)):
        split = getattr(data, name)
        rot = split.rotations.double().numpy()
        canonical = np.einsum("npj,nji->npi", split.points.double().numpy(), rot)
        found = canonical[:, 0, 0].round().astype(int) - first
        np.testing.assert_allclose(canonical, raw[found, :300], atol=1e-5)
        eye = np.broadcast_to(np.eye(3), rot.shape)
        np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), eye, atol=1e-6)
        assert not np.allclose(rot, eye, atol=1e-3)
        seen[name] = set(found.tolist())
    assert not seen["train"] & seen["val"] and seen["train"] | seen["val"] == set(range(20))
    assert seen["test"] == set(range(10))
    np.testing.assert_array_equal(data.test.labels.numpy(), test_labels)
    again = mn.load_modelnet40(folder, num_points=300, val_fraction=0.25, seed=1)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(again, name).points, getattr(data, name).points)
    z = mn.load_modelnet40(folder, num_points=20, protocol="z/z")
    np.testing.assert_allclose(
        z.test.rotations[:, 2].numpy(), np.tile([0.0, 0.0, 1.0], (10, 1)), atol=1e-6
    )


def test_missing_or_malformed_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mn.find_modelnet40_files(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no ply_data_train"):
        mn.find_modelnet40_files(tmp_path)
    folder = write_fake_modelnet40(tmp_path / "a", {"train": [4], "test": [4]}, points=50)
    with pytest.raises(ValueError, match="num_points must be at most 50"):
        mn.load_modelnet40(folder, num_points=300)
    with pytest.raises(ValueError, match="val_fraction must lie strictly between 0 and 1"):
        mn.load_modelnet40(folder, num_points=10, val_fraction=1.0)
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        f.create_dataset("points", data=np.zeros((2, 50, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="has no dataset 'data'"):
        mn.load_modelnet40(folder, num_points=10)
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((2, 50, 3), dtype=np.float32))
        f.create_dataset("label", data=np.zeros((3, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"'label' must have shape \(2,\) or \(2, 1\)"):
        mn.load_modelnet40(folder, num_points=10)


def test_missing_h5py_names_the_package(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ModuleNotFoundError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ModuleNotFoundError, match=r"pip install h5py"):
        mn.read_modelnet40_h5([Path("x.h5")])
