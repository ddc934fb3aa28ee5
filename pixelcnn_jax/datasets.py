"""Random-access image datasets: local npz folders and TFDS, no TensorFlow needed.

A split is anything with `len()` and `read(indices) -> (uint8 [n, H, W, C],
int32 labels [n])`, so each process reads only the examples it owns.

npz folders hold files `<group>*.npz` (e.g. `train_0.npz ... train_4.npz`,
`test.npz`), each with `image` (uint8 NHWC) and `label`. A group's files are
concatenated in name order. `holdout = N` moves the last N images of the
`train` group into a split named `holdout`.
"""

import dataclasses
import glob
import os
from typing import Optional

import numpy as np

from pixelcnn_jax import conditioning, logs
from pixelcnn_jax.errors import UserError

ASSETS_DIR = os.path.join(os.path.dirname(__file__), "assets")
SHIPPED_DIR = os.path.join(ASSETS_DIR, "mnist_subset")

# TFDS name -> (image shape, num classes; 0 = the dataset has no labels).
TFDS_DATASETS = {
    "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "downsampled_imagenet/32x32": ((32, 32, 3), 0),
    "downsampled_imagenet/64x64": ((64, 64, 3), 0),
    "imagenet_resized/32x32": ((32, 32, 3), 1000),
    "imagenet_resized/64x64": ((64, 64, 3), 1000),
}


@dataclasses.dataclass
class ArraySplit:
  """An in-memory split (npz), optionally with conditioning vectors."""
  images: np.ndarray
  labels: np.ndarray
  vectors: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.images)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  def read(self, indices: np.ndarray):
    vec = None if self.vectors is None else self.vectors[indices]
    return self.images[indices], self.labels[indices].astype(np.int32), vec


class TfdsSplit:
  """A TFDS split read through `tfds.data_source` (ArrayRecord, no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: Optional[str]):
    import tensorflow_datasets as tfds  # Optional: only the TFDS path needs it.
    try:
      with logs.quiet_absl():
        self._source = tfds.data_source(name, split=split, data_dir=data_dir or None,
                                        download=False)
    except Exception as e:  # TFDS raises many types for a missing or bad dataset.
      with logs.quiet_absl():
        builder = tfds.builder(name, data_dir=data_dir or None)
      if not builder.is_prepared():
        raise UserError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}: "
                        f"build it where there is internet (tfds build {name}) and point "
                        "data.tfds_data_dir at it, or use data.dataset=npz") from e
      raise UserError(f"cannot open TFDS dataset {name!r} split {split!r}: "
                      f"{str(e).splitlines()[0]}") from e
    self.image_shape, self.num_classes = TFDS_DATASETS[name]

  def __len__(self) -> int:
    return len(self._source)

  def read(self, indices: np.ndarray):
    examples = [self._source[int(i)] for i in indices]
    images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
    if images.ndim == 3:
      images = images[..., None]
    labels = np.array([e["label"] if self.num_classes else 0 for e in examples],
                      np.int32)
    return images, labels, None


class CenterCrop:
  """A view of a split cropped to (height, width) around the image centre."""

  def __init__(self, split, height: int, width: int):
    self.source, (h, w, c) = split, split.image_shape
    self._top, self._left = (h - height) // 2, (w - width) // 2
    self.image_shape = (height, width, c)

  @property
  def vectors(self):
    return getattr(self.source, "vectors", None)

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: np.ndarray):
    images, labels, vectors = self.source.read(indices)
    h, w, _ = self.image_shape
    return (images[:, self._top:self._top + h, self._left:self._left + w],
            labels, vectors)


def open_for_model(config, split: str):
  """`split` of config.data, cropped and checked against the model's images."""
  source = open_split(config.data, split)
  height, width = config.data.image_size
  h, w, c = source.image_shape
  if c != config.model.channels:
    raise UserError(f"dataset images have {c} channels but model.channels="
                    f"{config.model.channels}")
  if (h, w) != (height, width):
    if h < height or w < width:
      raise UserError(f"dataset images are {h}x{w}, smaller than data.image_size "
                      f"{height}x{width}; a centre crop cannot enlarge them")
    if not config.data.center_crop:
      raise UserError(f"dataset images are {h}x{w} but data.image_size is "
                      f"{height}x{width} (set data.center_crop=True to crop)")
    source = CenterCrop(source, height, width)
  if len(source) == 0:
    raise UserError(f"split {split!r} of {config.data.dataset} is empty")
  if config.model.num_classes > 0:
    check_labels(source, config.model.num_classes, f"split {split!r}")
  vectors = getattr(source, "vectors", None)
  if vectors is not None and vectors.shape[1] != config.model.cond_dim:
    raise UserError(f"data.vector_file gives {vectors.shape[1]}-dimensional vectors for "
                    f"split {split!r} but model.cond_dim={config.model.cond_dim} (an "
                    "embedding of another size?)")
  return source


def check_labels(split, num_classes: int, where: str) -> None:
  """Every label of `split` is a class of the model, checked before any step:
  all of them for an npz split, the dataset's class count for TFDS (which
  stores labels per example, too slow to read them all)."""
  if isinstance(split, CenterCrop):
    split = split.source
  if isinstance(split, TfdsSplit):
    if split.num_classes == 0:
      raise UserError(f"{where}: this TFDS dataset has no labels, but the model is "
                      f"class-conditional (model.num_classes={num_classes})")
    if split.num_classes > num_classes:
      raise UserError(f"{where}: the dataset has {split.num_classes} classes but "
                      f"model.num_classes={num_classes}")
    return
  try:
    conditioning.check_labels(split.labels, num_classes, where)
  except ValueError as e:
    raise UserError(str(e)) from e


def check_name(name: str) -> None:
  if name != "npz" and name not in TFDS_DATASETS:
    raise UserError(f"unknown dataset {name!r}: use 'npz' or one of "
                    f"{', '.join(TFDS_DATASETS)}")


def open_split(data_cfg, split: str):
  """The split named `split` of the dataset in `data_cfg` (config.data)."""
  name = data_cfg.dataset
  check_name(name)
  if name == "npz":
    return _npz_split(data_cfg, split)
  return TfdsSplit(name, split, data_cfg.get("tfds_data_dir"))


def is_shipped(folder: str) -> bool:
  """Whether `folder` is, or is inside, the data shipped with the package."""
  root = os.path.realpath(ASSETS_DIR)
  return os.path.commonpath([os.path.realpath(folder), root]) == root


def _npz_split(data_cfg, split: str) -> ArraySplit:
  folder = data_cfg.npz_dir
  holdout = int(data_cfg.get("holdout", 0))
  group = "train" if split == "holdout" else split
  if split == "holdout" and holdout <= 0:
    raise UserError("split 'holdout' needs config.data.holdout > 0")
  full = _read_group(folder, group)
  if data_cfg.get("vector_file"):
    full.vectors = _read_vectors(data_cfg.vector_file.format(split=group), len(full))
  if group != "train" or holdout <= 0:
    return full
  if holdout >= len(full):
    raise UserError(f"holdout={holdout} leaves no training images out of {len(full)}")
  cut = len(full) - holdout
  part = slice(cut, None) if split == "holdout" else slice(None, cut)
  vectors = None if full.vectors is None else full.vectors[part]
  return ArraySplit(full.images[part], full.labels[part], vectors)


def _read_group(folder: str, group: str) -> ArraySplit:
  files = sorted(glob.glob(os.path.join(folder, f"{group}*.npz")))
  if not files:
    raise UserError(f"no files {group}*.npz in {folder}")
  images, labels = [], []
  for path in files:
    img, lab = _read_npz(path)
    if images and img.shape[1:] != images[0].shape[1:]:
      raise UserError(f"{path}: image shape {img.shape[1:]} differs from "
                      f"{images[0].shape[1:]} in {files[0]}")
    images.append(img)
    labels.append(lab)
  return ArraySplit(np.concatenate(images), np.concatenate(labels))


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    with open(path, "rb") as f:
      is_zip = f.read(4) == b"PK\x03\x04"
    if not is_zip:  # np.load would call it "pickled data".
      raise UserError(f"cannot read {path}: not an npz file (an npz is a zip archive)")
    with np.load(path, allow_pickle=False) as f:
      if "image" not in f.files or "label" not in f.files:
        raise UserError(f"{path}: needs arrays 'image' and 'label', has {f.files}")
      img, lab = f["image"], f["label"]
  except UserError:
    raise
  except Exception as e:  # zip, pickle and OS errors all mean "unreadable".
    raise UserError(f"cannot read {path}: {e}") from e
  if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] not in (1, 3):
    raise UserError(f"{path}: 'image' must be uint8 [N, H, W, 1 or 3], got "
                    f"{img.dtype} {img.shape}")
  if lab.shape != (len(img),) or not np.issubdtype(lab.dtype, np.integer):
    raise UserError(f"{path}: 'label' must be integers of shape ({len(img)},), got "
                    f"{lab.dtype} {lab.shape}")
  return img, lab


def _read_vectors(path: str, rows: int) -> np.ndarray:
  try:
    vectors = np.load(path, allow_pickle=False)
  except Exception as e:
    raise UserError(f"cannot read vector file {path}: {e}") from e
  if vectors.ndim != 2 or len(vectors) != rows:
    raise UserError(f"vector file {path} has shape {vectors.shape}; it needs one row "
                    f"per image ({rows} rows)")
  return vectors.astype(np.float32)
