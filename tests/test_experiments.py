"""The paper's sections 3.3 and 3.4: auto-encoders, face embeddings,
portraits and interpolation, from the losses up to the CLI chain."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import autoencoder, datasets, embedding, objectives, portraits, train
from pixelcnn_jax import mesh as mesh_lib
from conftest import load_config, one_line_error, random_model, run_cli


def test_autoencoder_gradient_reaches_the_encoder():
  c = load_config("cifar10_autoencoder.py", "smoke")
  model, tx, shardings, step = train.setup(c, mesh_lib.make_mesh({"data": -1}))
  state = train.fresh_state(c, model, tx, shardings)
  images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), np.uint8)
  objective = objectives.for_model(c.model)

  def encoder_gradient(params):
    grads = jax.grad(lambda p: objective.per_example(
        model, {"params": p}, images, None, False, None).mean())(params)
    return sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads["encoder"]))

  # The maps from the code into the gates start at zero (cond_zero_init), so
  # the first steps move them (step 0's warm-up learning rate is 0) and then
  # the encoder learns.
  assert c.model.cond_zero_init and encoder_gradient(state.params) == 0
  for seed in range(2):
    state, _ = step(state, jnp.asarray(images), None, jax.random.PRNGKey(seed))
  assert encoder_gradient(state.params) > 0
  new, _ = step(state, jnp.asarray(images), None, jax.random.PRNGKey(2))
  moved = [not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(state.params["encoder"]),
      jax.tree_util.tree_leaves(new.params["encoder"]))]
  assert all(moved)


def test_triplet_loss_is_zero_when_separated_and_positive_when_swapped():
  labels = jnp.array([0, 0, 1, 1, 2, 2])
  centres = jnp.eye(3)[labels]  # Unit vectors, 2 apart (squared) between people.
  assert float(embedding.triplet_losses(centres, labels).max()) == 0.0
  swapped = centres[jnp.array([0, 2, 1, 3, 4, 5])]  # Two people trade an image.
  losses = embedding.triplet_losses(swapped, labels)
  assert float(losses[0]) > 0 and float(losses[4]) == 0.0
  alone = embedding.triplet_losses(centres[:3], jnp.array([0, 1, 2]))
  assert float(alone.max()) == 0.0  # No positive in the batch: no loss.


def test_identification_accuracy_leaves_each_image_out():
  labels = np.repeat(np.arange(3), 4)
  clustered = np.eye(3)[labels] + 0.01 * np.arange(12)[:, None]
  assert embedding.identification_accuracy(clustered, labels) == 1.0
  assert embedding.identification_accuracy(np.zeros((12, 3)) + np.arange(12)[:, None]
                                           % 2, labels) < 0.7


def test_interpolation_ends_are_the_endpoints_own_samples():
  model, variables = random_model(1, 3, 2, False, "vector", (4, 4))
  key = jax.random.PRNGKey(4)
  h_a, h_b = np.ones(5, np.float32), -np.ones(5, np.float32)
  row = portraits.interpolate(model, variables, h_a, h_b, 5, key)
  alone = lambda h: pj.sample(model, variables, key, 1, h=h[None])[0]
  np.testing.assert_array_equal(row[0], alone(h_a))
  np.testing.assert_array_equal(row[-1], alone(h_b))
  assert len({r.tobytes() for r in row}) > 1


def test_portraits_follow_the_sampling_temperature():
  """Near zero temperature every draw is the most likely image, whatever the key."""
  model, variables = random_model(1, 3, 2, False, "vector", (4, 4))
  h = np.stack([np.ones(5, np.float32), -np.ones(5, np.float32)])
  draw = lambda seed, temperature: portraits.draw_portraits(
      model, variables, h, jax.random.PRNGKey(seed), 2, temperature)
  np.testing.assert_array_equal(draw(0, 1e-4), draw(1, 1e-4))
  assert not np.array_equal(draw(0, 1.0), draw(1, 1.0))


def test_the_decoder_of_a_loaded_autoencoder_needs_a_code_of_its_size(tmp_path):
  trained = run_cli("--config=configs/cifar10_autoencoder.py:smoke",
                    f"--workdir={tmp_path}", "--config.model.code_dim=6")
  assert trained.returncode == 0, trained.stderr[-3000:]
  decoder, variables, config = pj.load(str(tmp_path))
  assert isinstance(decoder, pj.GatedPixelCNN) and decoder.cond_dim == 6
  whole, whole_vars, _ = pj.load(str(tmp_path), whole=True)
  images = np.zeros((2, 8, 8, 3), np.uint8)
  codes = np.asarray(autoencoder.encode(whole, whole_vars, images))
  assert codes.shape == (2, 6)
  assert pj.sample(decoder, variables, jax.random.PRNGKey(0), 2, h=codes).shape == (
      2, 8, 8, 3)
  with pytest.raises(ValueError, match="pass h"):
    pj.sample(decoder, variables, jax.random.PRNGKey(0), 2)
  with pytest.raises(ValueError, match=r"float vectors of shape \(2, 6\)"):
    pj.sample(decoder, variables, jax.random.PRNGKey(0), 2, h=np.zeros((2, 10),
                                                                      np.float32))
  one_line_error(run_cli("--config=configs/cifar10_autoencoder.py:smoke",
                         f"--workdir={tmp_path}", "--mode=eval",
                         "--config.model.code_dim=10"),
                 "different architecture (code_dim: checkpoint 6 vs config 10)")


def test_reconstruct_draws_figure_6_with_the_mse_baseline(tmp_path):
  ae, mse = f"--workdir={tmp_path / 'ae'}", f"--workdir={tmp_path / 'mse'}"
  for config, workdir in (("cifar10_autoencoder", ae), ("cifar10_mse_autoencoder", mse)):
    done = run_cli(f"--config=configs/{config}.py:smoke", workdir)
    assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((tmp_path / "mse" / "eval" / "20.json").read_text())
  assert 0 < result["mse"] < 4 and "mse_live" in result
  drawn = run_cli("--config=configs/cifar10_autoencoder.py:smoke", ae,
                  "--mode=reconstruct", f"--config.sample.baseline_workdir={tmp_path}/mse")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  assert "originals | MSE reconstructions | 4 samples each" in drawn.stdout
  from PIL import Image
  assert drawn.stdout.strip().endswith("reconstruct_20_2.png")  # Training drew _20.
  grid = Image.open(tmp_path / "ae" / "samples" / "reconstruct_20_2.png")
  assert grid.size == (1 + 6 * 9, 1 + 4 * 9)  # 4 rows: original, MSE, 4 samples.
  assert Image.open(tmp_path / "ae" / "samples" / "reconstruct_20.png").size == (
      1 + 5 * 9, 1 + 4 * 9)
  one_line_error(run_cli("--config=configs/cifar10_autoencoder.py:smoke", ae,
                         "--mode=reconstruct",
                         f"--config.sample.baseline_workdir={tmp_path}/ae"),
                 "holds a model of kind 'autoencoder' for (8, 8) images, not an mse_autoencoder")
  one_line_error(run_cli("--config=configs/cifar10_autoencoder.py:smoke", ae, "--mode=sample",
                         "--config.sample.complete=True"),
                 "sample.complete needs a PixelCNN (model.kind='pixelcnn'); this is "
                 "model.kind='autoencoder'")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
  """The section 3.3 chain on smoke configs, with the shipped MNIST subset's
  digits as the 'people': embedding -> vectors -> portrait PixelCNN."""
  root = tmp_path_factory.mktemp("faces")
  data = root / "data"
  data.mkdir()
  for name in ("train.npz", "test.npz"):
    shutil.copy(os.path.join(datasets.SHIPPED_DIR, name), data / name)
  emb = ["--config=configs/olivetti_embedding.py:smoke", f"--workdir={root / 'emb'}",
         f"--config.data.npz_dir={data}", "--config.model.code_dim=8"]
  por = ["--config=configs/olivetti_portraits.py:smoke", f"--workdir={root / 'por'}",
         f"--config.data.npz_dir={data}", f"--config.data.vector_file={data}/vec_{{split}}.npy"]
  for args in (emb, emb + ["--mode=embed"], por):
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
  return root, emb, por


def test_embed_writes_vectors_and_reports_identification(faces):
  root, emb, _ = faces
  vectors = np.load(root / "data" / "vec_test.npy")
  assert vectors.shape == (2000, 8)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
  again = run_cli(*emb, "--mode=embed")
  assert "test identification accuracy" in again.stdout
  assert isinstance(pj.load(str(root / "emb"))[0], embedding.EmbeddingNet)
  # Vectors of another net (here one kept vector changed) are what a portrait
  # PixelCNN may be trained on: refused, and both files left as they were.
  other = vectors.copy()
  other[0] = -other[0]
  np.save(root / "data" / "vec_test.npy", other)
  train_bytes = (root / "data" / "vec_train.npy").read_bytes()
  one_line_error(run_cli(*emb, "--mode=embed"),
                 f"{root / 'data'}/vec_test.npy holds other vectors")
  np.testing.assert_array_equal(np.load(root / "data" / "vec_test.npy"), other)
  assert (root / "data" / "vec_train.npy").read_bytes() == train_bytes
  np.save(root / "data" / "vec_test.npy", vectors)
  one_line_error(run_cli(*emb, "--mode=embed", f"--config.data.npz_dir={root / 'data'}/"
                         "test.npz"),
                 f"cannot write into {root / 'data'}/test.npz: File exists; "
                 "vec_<split>.npy goes beside the npz files")


def test_portraits_and_interpolation_through_the_cli(faces):
  root, _, por = faces
  figures = por + [f"--config.sample.embedding_workdir={root / 'emb'}"]
  drawn = run_cli(*figures, "--mode=portraits", "--config.sample.people=2,5",
                  "--config.sample.temperature=0.9")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  result = json.loads((root / "por" / "eval" / "portraits_20.json").read_text())
  assert result["people"] == [2, 5] and result["portraits_per_person"] == 8
  assert result["temperature"] == 0.9
  assert 0.0 <= result["identity_top1"] <= 1.0 and result["chance"] == 0.1
  lines = run_cli(*figures, "--mode=interpolate")
  assert lines.returncode == 0, lines.stderr[-3000:]
  assert os.path.exists(root / "por" / "samples" / "interpolation_20.png")
  again = run_cli(*figures, "--mode=portraits", "--config.sample.people=2,5")
  assert again.returncode == 0, again.stderr[-3000:]
  second = json.loads((root / "por" / "eval" / "portraits_20_2.json").read_text())
  assert second["temperature"] == 1.0 and second["grid"].endswith("portraits_20_2.png")
  assert os.path.exists(second["grid"])
  assert json.loads((root / "por" / "eval" / "portraits_20.json").read_text()) == result
  out = root / "elsewhere"
  drawn = run_cli(*figures, "--mode=portraits", f"--config.eval.output_dir={out}")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  assert json.loads((out / "eval" / "portraits_20.json").read_text())["step"] == 20
  assert (out / "samples" / "portraits_20.png").exists()
  one_line_error(run_cli(*figures, "--mode=portraits", "--config.sample.people=3,42"),
                 "person 42 is not in split 'test'")
  one_line_error(run_cli(*por, "--mode=portraits"), "set sample.embedding_workdir")
  one_line_error(run_cli(*por, "--mode=portraits",
                         f"--config.sample.embedding_workdir={root / 'por'}"),
                 f"sample.embedding_workdir={root / 'por'} holds a model of kind 'pixelcnn', "
                 "not an embedding net")
  one_line_error(run_cli(*figures, "--mode=interpolate", "--config.sample.people=3"),
                 "interpolation needs photos of two people at least")
  one_line_error(run_cli(*figures, "--mode=interpolate", "--config.sample.per_image=1"),
                 "an interpolation row needs its two ends: set sample.per_image >= 2, got 1")


def test_an_embedding_of_the_wrong_size_is_refused(faces, tmp_path):
  root, emb, por = faces
  wide = tmp_path / "wide"
  done = run_cli(*emb[:1], f"--workdir={wide}", *emb[2:3], "--config.model.code_dim=12")
  assert done.returncode == 0, done.stderr[-3000:]
  one_line_error(run_cli(*por, "--mode=portraits",
                         f"--config.sample.embedding_workdir={wide}"),
                 "the embedding net gives 12-dimensional vectors but this model takes "
                 "model.cond_dim=8")
  np.save(tmp_path / "vec_train.npy", np.zeros((10_000, 12), np.float32))
  np.save(tmp_path / "vec_test.npy", np.zeros((2_000, 12), np.float32))
  one_line_error(run_cli(*por[:3], f"--workdir={tmp_path / 'p'}",
                         f"--config.data.vector_file={tmp_path}/vec_{{split}}.npy"),
                 "12-dimensional vectors for split 'train' but model.cond_dim=8")
