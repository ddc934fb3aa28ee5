"""Lossless compression with a PixelCNN: exact round trips, the rate its
bits/dim promise, and files that never decode to wrong images."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import pixelcnn_jax as pj
from pixelcnn_jax import compression
from conftest import REPO, example_h, one_line_error, random_model, run_cli


def _images(model, num, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (num, *model.image_size, model.channels)).astype(np.uint8)


@pytest.mark.parametrize("channels,conditioning", [(1, "none"), (3, "none"),
                                                   (3, "class"), (1, "vector")])
def test_round_trip_is_exact(channels, conditioning):
  model, variables = random_model(channels, 3, 2, True, conditioning, (5, 6))
  images = _images(model, 3)
  h = None if conditioning == "none" else np.asarray(example_h(model, 3))
  data = pj.compress(model, variables, images, h=h)
  np.testing.assert_array_equal(pj.decompress(model, variables, data), images)
  if h is not None:
    np.testing.assert_array_equal(compression.stored_condition(data), h)


def test_rate_is_the_models_bits_per_dim():
  """64 grey 8x8 images: the payload (the header aside) is within 1% of
  -log2 p(x) under the model."""
  model, variables = random_model(1, 3, 2, False, "none", (8, 8))
  images = _images(model, 64)
  data = pj.compress(model, variables, images)
  ideal_bits = float(pj.bits_per_dim(model.apply(variables, images), images).sum()) * 64
  payload_bits = 8 * (len(data) - compression.read_header(data)["payload_at"])
  assert abs(payload_bits - ideal_bits) <= 0.01 * ideal_bits


def test_damaged_files_and_other_models_are_refused():
  model, variables = random_model(1, 3, 1, False, "none", (4, 4))
  images = _images(model, 4)
  data = pj.compress(model, variables, images)
  corrupt = bytearray(data)
  corrupt[-3] ^= 0x40
  with pytest.raises(compression.CodecError, match="fail their checksum"):
    pj.decompress(model, variables, bytes(corrupt))
  with pytest.raises(compression.CodecError, match="truncated"):
    pj.decompress(model, variables, data[:-4])
  with pytest.raises(compression.CodecError, match="not a pixelcnn-jax compressed"):
    pj.decompress(model, variables, b"PNG" + data[3:])
  _, other = random_model(1, 3, 1, False, "none", (4, 4), seed=5)
  with pytest.raises(compression.CodecError, match="a different model"):
    pj.decompress(model, other, data)
  with pytest.raises(compression.CodecError, match=r"images must be uint8 \[N, 4, 4, 1\]"):
    pj.compress(model, variables, images.astype(np.float32))


def test_png_folders_round_trip_and_no_output_is_overwritten(tmp_path):
  wd = f"--workdir={tmp_path / 'w'}"
  smoke = "--config=configs/default.py:smoke"
  assert run_cli(smoke, wd).returncode == 0
  images = np.random.default_rng(1).integers(0, 256, (3, 8, 8)).astype(np.uint8)
  for folder in ("pngs", "empty", "broken"):
    (tmp_path / folder).mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(tmp_path / "pngs" / f"{i}.png")
  (tmp_path / "broken" / "0.png").write_bytes(b"not a png")
  compress = lambda src, dst: run_cli(smoke, wd, "--mode=compress",
                                      f"--config.compress.input={tmp_path / src}",
                                      f"--config.compress.output={tmp_path / dst}")
  decompress = lambda src, dst: run_cli(smoke, wd, "--mode=decompress",
                                        f"--config.compress.input={tmp_path / src}",
                                        f"--config.compress.output={tmp_path / dst}")
  assert compress("pngs", "x.pcnnz").returncode == 0
  assert decompress("x.pcnnz", "back").returncode == 0
  back = sorted((tmp_path / "back").iterdir())
  np.testing.assert_array_equal(np.stack([np.asarray(Image.open(p)) for p in back]), images)

  written = (tmp_path / "x.pcnnz").read_bytes()
  (tmp_path / "other").mkdir()
  Image.fromarray(images[0]).save(tmp_path / "other" / "000000.png")
  kept = (tmp_path / "other" / "000000.png").read_bytes()
  one_line_error(compress("pngs", "x.pcnnz"),
                 f"config.compress.output {tmp_path / 'x.pcnnz'} already exists")
  one_line_error(decompress("x.pcnnz", "other"),
                 f"config.compress.output {tmp_path / 'other'} already exists")
  assert (tmp_path / "x.pcnnz").read_bytes() == written
  assert (tmp_path / "other" / "000000.png").read_bytes() == kept
  one_line_error(compress("empty", "y.pcnnz"), f"no *.png files in {tmp_path / 'empty'}")
  one_line_error(compress("broken", "y.pcnnz"), f"cannot read the PNGs of {tmp_path / 'broken'}")
  assert not (tmp_path / "y.pcnnz").exists()


def _with_header(data, **fields):
  """`data` with fields of its header replaced (names as in read_header)."""
  names = ("magic", "version", "fingerprint", "n", "height", "width", "channels", "kind",
           "cond_dim", "sha256", "words")
  values = dict(zip(names, compression._HEADER.unpack_from(data)), **fields)
  return compression._HEADER.pack(*(values[k] for k in names)) + data[compression._HEADER.size:]


def test_conditioning_and_headers_that_do_not_fit_are_refused():
  plain, plain_vars = random_model(1, 3, 1, False, "none", (4, 4))
  images = _images(plain, 3)
  with pytest.raises(compression.CodecError, match="this model is unconditional; do not pass h"):
    pj.compress(plain, plain_vars, images, h=np.zeros(3, np.int32))
  data = pj.compress(plain, plain_vars, images)
  with pytest.raises(compression.CodecError, match="format version 9; this pixelcnn-jax reads"):
    pj.decompress(plain, plain_vars, _with_header(data, version=9))
  with pytest.raises(compression.CodecError, match="corrupt header: conditioning kind 7"):
    pj.decompress(plain, plain_vars, _with_header(data, kind=7))
  with pytest.raises(compression.CodecError,
                     match="the file holds 4x4x1 images; the model makes 5x4x1"):
    pj.decompress(plain.clone(image_size=(5, 4)), plain_vars, data)

  labelled, labelled_vars = random_model(1, 3, 1, False, "class", (4, 4))
  with pytest.raises(compression.CodecError, match="conditioning='class'; pass h"):
    pj.compress(labelled, labelled_vars, images)
  labels = np.array([0, 1, 2], np.int32)
  data = pj.compress(labelled, labelled_vars, images, h=labels)
  np.testing.assert_array_equal(pj.decompress(labelled, labelled_vars, data, h=labels),
                                images)
  with pytest.raises(compression.CodecError,
                     match="the h passed differs from the conditioning stored in the file"):
    pj.decompress(labelled, labelled_vars, data, h=labels[::-1])

  vector, vector_vars = random_model(1, 3, 1, False, "vector", (4, 4))
  with pytest.raises(compression.CodecError,
                     match=r"h must be float vectors of shape \(3, 5\), got \(3, 4\)"):
    pj.compress(vector, vector_vars, images, h=np.zeros((3, 4), np.float32))


def test_the_cli_compresses_and_decompresses_files(tmp_path):
  wd = f"--workdir={tmp_path / 'w'}"
  smoke = "--config=configs/mnist_classcond.py:smoke"
  trained = run_cli(smoke, wd)
  assert trained.returncode == 0, trained.stderr[-3000:]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 8, 8, 1)).astype(np.uint8)
  labels = np.arange(6) % 10
  np.savez(tmp_path / "in.npz", image=images, label=labels)
  packed = run_cli(smoke, wd, "--mode=compress", f"--config.compress.input={tmp_path}/in.npz",
                   f"--config.compress.output={tmp_path}/x.pcnnz")
  assert packed.returncode == 0, packed.stderr[-3000:]
  assert "bits per sub-pixel" in packed.stdout
  unpacked = run_cli(smoke, wd, "--mode=decompress",
                     f"--config.compress.input={tmp_path}/x.pcnnz",
                     f"--config.compress.output={tmp_path}/out.npz")
  assert unpacked.returncode == 0, unpacked.stderr[-3000:]
  with np.load(tmp_path / "out.npz") as f:
    np.testing.assert_array_equal(f["image"], images)
    np.testing.assert_array_equal(f["label"], labels)
  data = (tmp_path / "x.pcnnz").read_bytes()
  (tmp_path / "cut.pcnnz").write_bytes(data[:-1])
  one_line_error(run_cli(smoke, wd, "--mode=decompress",
                         f"--config.compress.input={tmp_path}/cut.pcnnz",
                         f"--config.compress.output={tmp_path}/o.npz"), "truncated")
  np.savez(tmp_path / "nolabels.npz", image=images)
  one_line_error(run_cli(smoke, wd, "--mode=compress",
                         f"--config.compress.input={tmp_path}/nolabels.npz",
                         f"--config.compress.output={tmp_path}/y.pcnnz"), "no 'label' array")
  (tmp_path / "pngs").mkdir()
  one_line_error(run_cli(smoke, wd, "--mode=compress", f"--config.compress.input={tmp_path}/pngs",
                         f"--config.compress.output={tmp_path}/y.pcnnz"),
                 f"{tmp_path}/pngs is a folder of PNGs, which hold no 'label'")
  one_line_error(run_cli(smoke, wd, "--mode=decompress",
                         f"--config.compress.input={tmp_path}/x.pcnnz",
                         f"--config.compress.output={tmp_path}/back"),
                 "a folder of PNGs holds no 'label' for this model's conditioning")

  # experiments/bench_compress.py, the benchmark behind the compression results.
  bench = lambda data: subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "bench_compress.py"),
       f"--workdir={tmp_path / 'w'}", f"--data={data}", "--batch=4", "--step=latest"],
      capture_output=True, text=True, timeout=300)
  r = bench(tmp_path / "in.npz")
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads(r.stdout)
  assert result["images"] == 6 and result["round_trip_exact"]
  assert result["written_bits_per_subpixel"] > result["payload_bits_per_subpixel"] > 0
  np.savez(tmp_path / "small.npz", image=images[:, :4, :4], label=labels)
  for data, error in (
      (tmp_path / "small.npz", f"error: {tmp_path}/small.npz: this model needs uint8 images "
       "[N, 8, 8, 1], got uint8 [6, 4, 4, 1]"),
      (tmp_path / "nolabels.npz", "error: 'label is not a file in the archive'")):
    r = bench(data)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [error]
