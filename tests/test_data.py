import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ml_collections import ConfigDict

from pixelcnn_jax import datasets, input_pipeline
from pixelcnn_jax.errors import UserError


def _data_cfg(**kw):
  cfg = dict(dataset="npz", npz_dir=datasets.SHIPPED_DIR, holdout=0, tfds_data_dir="",
             vector_file="")
  cfg.update(kw)
  return ConfigDict(cfg)


def _model_cfg(conditioning="none", num_classes=0, kind="pixelcnn"):
  return ConfigDict(dict(kind=kind, conditioning=conditioning, num_classes=num_classes))


def _write(folder, name, n, shape=(4, 4, 3), labels=None):
  images = np.arange(n * np.prod(shape), dtype=np.int64).reshape(n, *shape) % 256
  labels = np.arange(n) % 10 if labels is None else labels
  np.savez(folder / name, image=images.astype(np.uint8), label=labels)


def test_shipped_subsets_are_real_data():
  train = datasets.open_split(_data_cfg(), "train")
  test = datasets.open_split(_data_cfg(), "test")
  assert (len(train), len(test)) == (10_000, 2_000)
  assert train.image_shape == (28, 28, 1)
  images, labels, _ = train.read(np.arange(5))
  assert labels.tolist() == [5, 0, 4, 1, 9]  # The first MNIST training labels.
  cifar = datasets.open_split(_data_cfg(npz_dir=datasets.SHIPPED_DIR.replace(
      "mnist_subset", "cifar10_subset"), holdout=100), "holdout")
  assert len(cifar) == 100 and cifar.image_shape == (32, 32, 3)


def test_groups_concatenate_in_name_order_and_holdout_takes_the_last(tmp_path):
  _write(tmp_path, "train_0.npz", 5)
  _write(tmp_path, "train_1.npz", 3, labels=np.array([7, 8, 9]))
  cfg = _data_cfg(npz_dir=str(tmp_path), holdout=2)
  train, held = datasets.open_split(cfg, "train"), datasets.open_split(cfg, "holdout")
  assert (len(train), len(held)) == (6, 2)
  assert held.read(np.arange(2))[1].tolist() == [8, 9]


@pytest.mark.parametrize("write,message", [
    (lambda p: (p / "train.npz").write_bytes(b"not a zip"), "cannot read"),
    (lambda p: np.savez(p / "train.npz", image=np.zeros((2, 4, 4, 3), np.uint8)),
     "needs arrays 'image' and 'label'"),
    (lambda p: np.savez(p / "train.npz", image=np.zeros((2, 4, 4), np.uint8),
                        label=np.zeros(2)), "must be uint8"),
    (lambda p: np.savez(p / "train.npz", image=np.zeros((2, 4, 4, 3), np.float32),
                        label=np.zeros(2, int)), "must be uint8"),
    (lambda p: np.savez(p / "train.npz", image=np.zeros((2, 4, 4, 3), np.uint8),
                        label=np.zeros(3, int)), "'label' must be integers"),
    (lambda p: None, "no files train"),
])
def test_bad_npz(tmp_path, write, message):
  write(tmp_path)
  with pytest.raises(UserError, match=message):
    datasets.open_split(_data_cfg(npz_dir=str(tmp_path)), "train")


def test_mismatched_files_and_vectors(tmp_path):
  _write(tmp_path, "train_0.npz", 2)
  _write(tmp_path, "train_1.npz", 2, shape=(5, 5, 3))
  with pytest.raises(UserError, match="differs"):
    datasets.open_split(_data_cfg(npz_dir=str(tmp_path)), "train")
  (tmp_path / "train_1.npz").unlink()
  np.save(tmp_path / "vec_train.npy", np.zeros((3, 4), np.float32))
  cfg = _data_cfg(npz_dir=str(tmp_path), vector_file=str(tmp_path / "vec_{split}.npy"))
  with pytest.raises(UserError, match="one row per image"):
    datasets.open_split(cfg, "train")
  np.save(tmp_path / "vec_train.npy", np.ones((2, 4), np.float32))
  assert datasets.open_split(cfg, "train").read(np.arange(2))[2].shape == (2, 4)


def test_unknown_dataset():
  with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
    datasets.open_split(_data_cfg(dataset="imagenet"), "train")


def test_tfds_path_without_tensorflow():
  """In a fresh process, so that no other test's imports can hide or cause it."""
  pytest.importorskip("tensorflow_datasets")
  code = textwrap.dedent("""
      import sys
      import numpy as np
      import tensorflow_datasets as tfds
      from pixelcnn_jax import datasets
      from ml_collections import ConfigDict
      cfg = ConfigDict(dict(dataset="mnist", npz_dir="", holdout=0, tfds_data_dir="",
                            vector_file=""))
      with tfds.testing.mock_data(num_examples=9):
        split = datasets.open_split(cfg, "test")
        images, labels, _ = split.read(np.array([0, 4, 8]))
      assert len(split) == 9 and images.shape == (3, 28, 28, 1)
      assert images.dtype == np.uint8 and labels.dtype == np.int32
      assert "tensorflow" not in sys.modules, "TensorFlow was imported"
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]


def test_unprepared_tfds_dataset_says_so(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(UserError, match="'mnist' is not prepared in .*tfds build mnist"):
    datasets.open_split(_data_cfg(dataset="mnist", tfds_data_dir=str(tmp_path)), "train")


def test_class_conditioning_on_an_unlabelled_tfds_set_is_refused(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  data = _data_cfg(dataset="downsampled_imagenet/32x32", image_size=(32, 32),
                   center_crop=False, tfds_data_dir=str(tmp_path))
  config = ConfigDict({"data": data, "model": dict(channels=3, num_classes=10)})
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(UserError, match="has no labels, but the model is class-cond"):
      datasets.open_for_model(config, "train")


def test_eval_batches_cover_every_example_once():
  split = datasets.ArraySplit(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10))
  batches = list(input_pipeline.eval_batches(split, 4, _model_cfg("class", 10)))
  assert [b["image"].shape[0] for b in batches] == [4, 4, 4]
  masks = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["h"] for b in batches])
  assert masks.sum() == 10 and labels[masks > 0].tolist() == list(range(10))


def test_train_stream_is_a_function_of_the_step():
  split = datasets.ArraySplit(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10))
  a = input_pipeline.TrainStream(split, 4, 0, _model_cfg())
  b = input_pipeline.TrainStream(split, 4, 0, _model_cfg())
  seen = np.concatenate([a.indices(s) for s in range(5)])
  assert sorted(seen[:10]) == list(range(10))  # One epoch covers every image.
  assert all((a.indices(s) == b.indices(s)).all() for s in (4, 2, 0))
  it = a.iterate(3)
  assert next(it)["image"].shape == (4, 2, 2, 1)


def test_out_of_range_labels_are_refused():
  split = datasets.ArraySplit(np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 2, 10]))
  stream = input_pipeline.TrainStream(split, 4, 0, _model_cfg("class", 10))
  with pytest.raises(UserError, match="label 10 is outside 0..9"):
    stream.batch(0)


def test_random_flip_mirrors_half_the_batch_as_a_function_of_the_step():
  images = np.arange(64 * 2 * 3).reshape(64, 2, 3, 1).astype(np.uint8)
  original = images.copy()
  split = datasets.ArraySplit(images, np.zeros(64, np.int64))
  flip = lambda: input_pipeline.TrainStream(split, 32, 0, _model_cfg(), random_flip=True)
  plain = input_pipeline.TrainStream(split, 32, 0, _model_cfg()).batch(5)["image"]
  a, b = flip().batch(5)["image"], flip().batch(5)["image"]
  np.testing.assert_array_equal(a, b)
  mirrored = np.all(a == plain[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(mirrored | np.all(a == plain, axis=(1, 2, 3)))
  assert 4 < mirrored.sum() < 28
  np.testing.assert_array_equal(split.images, original)  # The split is left as it was.


def test_random_shift_moves_each_image_over_a_repeated_border():
  images = np.zeros((64, 6, 6, 1), np.uint8)
  images[:, 2:4, 2:4] = 255  # A 2x2 dot on blank paper, away from the border.
  split = datasets.ArraySplit(images, np.zeros(64, np.int64))
  shift = lambda: input_pipeline.TrainStream(split, 32, 0, _model_cfg(), random_shift=2)
  a, b = shift().batch(5)["image"], shift().batch(5)["image"]
  np.testing.assert_array_equal(a, b)  # A function of (seed, step).
  assert (a.sum(axis=(1, 2, 3)) == 4 * 255).all()  # Moved whole, nothing new.
  rows, cols = np.nonzero(a[..., 0].max(axis=2))[1], np.nonzero(a[..., 0].max(axis=1))[1]
  assert rows.min() == 0 and rows.max() == 5 and cols.min() == 0 and cols.max() == 5
  moved = [tuple(np.argwhere(img[..., 0])[0] - 2) for img in a]
  assert len(set(moved)) > 10 and all(abs(d) <= 2 for m in moved for d in m)

