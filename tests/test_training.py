"""Training end to end on the shipped real data, in-process (CPU)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import checkpoint, datasets, evaluate, objectives, train
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.errors import UserError

from conftest import load_config


def _config(steps=10, **overrides):
  c = load_config("default.py", "smoke")
  c.unlock()
  c.train.num_steps = steps
  c.train.eval_every = c.train.sample_every = c.train.checkpoint_every = 5
  c.train.log_every = 5
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  c.lock()
  return c


def test_learns_well_below_eight_bits(tmp_path):
  c = _config(steps=150, **{"train.learning_rate": 3e-3, "train.eval_every": 150,
                            "train.sample_every": 150, "train.checkpoint_every": 150,
                            "train.batch_size": 16, "data.eval_limit": 256})
  train.train_and_evaluate(c, str(tmp_path))
  with open(tmp_path / "eval" / "150.json") as f:
    result = json.load(f)
  assert result["num_examples"] == 256
  assert result["bits_per_dim"] < 5.5  # From 8.0 at init.
  assert os.path.exists(tmp_path / "samples" / "sample_150.png")
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert lines[0]["num_params"] > 0 and "img_per_s" in lines[1]

  # --mode=eval from the checkpoint gives the in-training number.
  assert evaluate.run(c, str(tmp_path)) == pytest.approx(result["bits_per_dim"],
                                                         abs=1e-6)
  model, variables, saved = pj.load(str(tmp_path))
  assert saved.model.features == c.model.features
  x = np.zeros((1, 8, 8, 1), np.uint8)
  assert model.apply(variables, x).shape == (1, 8, 8, 1, 256)


def test_resume_continues_with_the_same_optimizer_state(tmp_path):
  straight = train.train_and_evaluate(
      _config(10, **{"train.schedule_steps": 10}), str(tmp_path / "a"))
  train.train_and_evaluate(_config(5, **{"train.schedule_steps": 10}),
                           str(tmp_path / "b"))
  resumed = train.train_and_evaluate(_config(10, **{"train.schedule_steps": 10}),
                                     str(tmp_path / "b"))
  assert int(resumed.step) == 10
  for a, b in zip(jax.tree_util.tree_leaves(straight),
                  jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_scoring_the_training_split_is_said(tmp_path, caplog):
  train.train_and_evaluate(_config(2, **{"data.eval_split": "train"}), str(tmp_path))
  assert "data.eval_split is the training split 'train'" in caplog.text


def _same(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_live_and_ema_weights_are_evaluated_and_the_better_is_loaded(tmp_path):
  # A slow EMA (0.9995) over a 10-step run: debiased, it still tracks the run.
  c = _config(10, **{"train.ema_decay": 0.9995})
  state = train.train_and_evaluate(c, str(tmp_path))
  result = json.loads((tmp_path / "eval" / "10.json").read_text())
  assert set(result) >= {"bits_per_dim_live", "bits_per_dim_ema", "weights"}
  live, ema = result["bits_per_dim_live"], result["bits_per_dim_ema"]
  assert abs(live - ema) < 0.5  # Not an EMA stuck near the initial 8 bits/dim.
  assert result["weights"] == ("ema" if ema <= live else "live")
  assert result["bits_per_dim"] == min(live, ema)
  _, variables, _ = pj.load(str(tmp_path))
  assert _same(variables["params"], state.weights(result["weights"]))
  assert _same(pj.load(str(tmp_path), weights="ema")[1]["params"], state.ema_params)
  assert _same(pj.load(str(tmp_path), weights="live")[1]["params"], state.params)
  assert not _same(state.params, state.ema_params)
  with pytest.raises(UserError, match="weights must be 'auto', 'live' or 'ema'"):
    pj.load(str(tmp_path), weights="best")


def test_best_checkpoint_is_kept_next_to_the_latest(tmp_path):
  """keep_checkpoints=2 keeps the two newest steps and the best evaluated one,
  and step="best" loads it."""
  c = _config(10, **{"train.keep_checkpoints": 2, "train.checkpoint_every": 1})
  model, tx, shardings, _ = train.setup(c, mesh_lib.make_mesh({"data": -1}))
  state = train.fresh_state(c, model, tx, shardings)
  evals = {2: 3.0, 4: 2.0, 6: 2.5}
  with checkpoint.manager(str(tmp_path), c) as mngr:
    for step in range(1, 8):
      state = state.replace(step=jnp.int32(step), params=jax.tree_util.tree_map(
          lambda p: p + 1.0, state.params))
      metrics = ({"eval_loss": evals[step], "eval_loss_live": evals[step]}
                 if step in evals else None)
      checkpoint.save(mngr, step, state, c, metrics, force=True)
      if step == 4:
        best_params = state.params
    mngr.wait_until_finished()
    assert sorted(mngr.all_steps()) == [4, 6, 7]
  _, variables, _ = pj.load(str(tmp_path), step="best")
  assert _same(variables["params"], best_params)
  c2 = _config(10, **{"eval.step": "best"})
  assert checkpoint.restore_weights(str(tmp_path), c2, "best")[2] == 4
  with pytest.raises(UserError, match="step must be 'latest', 'best' or a step number"):
    pj.load(str(tmp_path), step="worst")


def test_evals_score_training_images_in_eval_mode(tmp_path):
  """train.eval_train_examples: each eval also scores the first N training
  images with dropout off, logged next to the held-out number."""
  c = _config(10, **{"train.eval_train_examples": 24, "model.dropout": 0.5,
                     "train.ema_decay": 0.9})
  state = train.train_and_evaluate(c, str(tmp_path))
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  fit = [l for l in lines if "eval_train_bpd_live" in l]
  assert [l["step"] for l in fit] == [5, 10]
  assert all("eval_train_bpd_ema" in l for l in fit)
  mesh = mesh_lib.make_mesh(c.mesh)
  model, _, shardings, _ = train.setup(c, mesh)
  eval_step = evaluate.make_eval_step(model, objectives.for_model(c.model), mesh,
                                      shardings.params)
  images = datasets.open_for_model(c, c.data.train_split)
  expected, count = evaluate.evaluate(eval_step, state.params, images, c, mesh, limit=24)
  assert count == 24
  assert fit[-1]["eval_train_bpd_live"] == pytest.approx(expected, abs=1e-6)


def test_load_errors(tmp_path):
  with pytest.raises(UserError, match="no checkpoint"):
    pj.load(str(tmp_path))
  train.train_and_evaluate(_config(5), str(tmp_path))
  with pytest.raises(UserError, match="no checkpoint for step 3"):
    pj.load(str(tmp_path), step=3)
  with pytest.raises(UserError, match="different architecture"):
    evaluate.run(_config(5, **{"model.features": 24}), str(tmp_path))
  # Keys that do not shape the parameters may differ: a bf16 run evaluates in fp32.
  evaluate.run(_config(5, **{"model.dtype": "bfloat16", "model.dropout": 0.3}),
               str(tmp_path))


def test_time_limit_ends_the_run_like_a_finished_one(tmp_path):
  c = _config(100_000, **{"train.time_limit_s": 3.0, "train.eval_every": 10**6,
                          "train.sample_every": 10**6, "train.checkpoint_every": 10**6})
  state = train.train_and_evaluate(c, str(tmp_path))
  step = int(state.step)
  assert 0 < step < 100_000
  assert (tmp_path / "ckpt" / str(step)).exists()
  assert (tmp_path / "eval" / f"{step}.json").exists()
  assert (tmp_path / "samples" / f"sample_{step}.png").exists()


def test_eval_and_load_pick_the_requested_step(tmp_path):
  train.train_and_evaluate(_config(10), str(tmp_path))
  c = _config(10, **{"eval.step": "5"})
  evaluate.run(c, str(tmp_path))
  assert json.loads((tmp_path / "eval" / "5_test.json").read_text())["step"] == 5
  assert checkpoint.restore_weights(str(tmp_path), c, c.eval.step)[2] == 5
  _, latest, _ = pj.load(str(tmp_path))
  _, fifth, _ = pj.load(str(tmp_path), step=5)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(latest), jax.tree_util.tree_leaves(fifth)))


def test_time_budget_fixes_the_horizon_and_ends_on_a_decayed_rate(tmp_path):
  c = _config(100_000, **{"train.time_budget_s": 20.0, "train.log_every": 10,
                          "train.eval_every": 10**6, "train.sample_every": 10**6,
                          "train.checkpoint_every": 10**6})
  state = train.train_and_evaluate(c, str(tmp_path))
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  # Fixed at the probe, then refitted once at the speed measured since.
  horizon = [int(l["horizon"]) for l in lines if "horizon" in l][-1:]
  assert len([l for l in lines if "horizon" in l]) == 2
  assert 20 < horizon[0] < 100_000
  assert int(state.step) == int(state.horizon) == horizon[0]
  last_lr = [l["learning_rate"] for l in lines if "learning_rate" in l][-1]
  assert last_lr < 0.05 * c.train.learning_rate  # The cosine ran to its end.
  assert (tmp_path / "eval" / f"{horizon[0]}.json").exists()
  # Resumed with a longer budget, the run keeps its horizon: nothing left to do.
  again = train.train_and_evaluate(
      _config(100_000, **{"train.time_budget_s": 100.0, "train.log_every": 10}),
      str(tmp_path))
  assert int(again.step) == horizon[0]


def test_microbatches_give_the_batch_gradient():
  """n slices, one at a time: the whole batch's mean loss and gradient
  without dropout; with dropout, slice i (rows i, i+n, ...) draws its masks
  from the step's key folded with i."""
  c = _config(**{"model.num_classes": 10, "model.conditioning": "class"})
  model = ts.make_model(c.model, c.data.image_size)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (8, 8, 8, 1), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (8,), np.int32))
  params = model.init(jax.random.PRNGKey(0), images, h=labels)["params"]
  key = jax.random.PRNGKey(3)
  sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh(c.mesh))

  def loss_fn(dropout):
    def fn(p, x, h, k):
      return jnp.mean(objectives.LIKELIHOOD.per_example(
          model.clone(dropout=dropout), {"params": p}, x, h, True, {"dropout": k}))
    return fn

  whole = jax.value_and_grad(loss_fn(0.0))(params, images, labels, key)
  sliced = jax.jit(train.microbatch_value_and_grad(loss_fn(0.0), 4, sharding))(
      params, images, labels, key)
  for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(sliced)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

  by_hand = [jax.value_and_grad(loss_fn(0.5))(params, images[i::2], labels[i::2],
                                              jax.random.fold_in(key, i)) for i in (0, 1)]
  by_hand = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, *by_hand)
  sliced = jax.jit(train.microbatch_value_and_grad(loss_fn(0.5), 2, sharding))(
      params, images, labels, key)
  for a, b in zip(jax.tree_util.tree_leaves(by_hand), jax.tree_util.tree_leaves(sliced)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
