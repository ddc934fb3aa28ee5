"""Training end to end on the shipped real data, in-process (CPU)."""

import json
import os

import jax
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import checkpoint, evaluate, train
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


def test_ema_weights_are_what_load_returns(tmp_path):
  c = _config(5, **{"train.ema_decay": 0.5})
  state = train.train_and_evaluate(c, str(tmp_path))
  _, variables, _ = pj.load(str(tmp_path))
  for a, b in zip(jax.tree_util.tree_leaves(state.ema_params),
                  jax.tree_util.tree_leaves(variables["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.ema_params)))


def test_load_errors(tmp_path):
  with pytest.raises(UserError, match="no checkpoint"):
    pj.load(str(tmp_path))
  train.train_and_evaluate(_config(5), str(tmp_path))
  with pytest.raises(UserError, match="no checkpoint for step 3"):
    pj.load(str(tmp_path), step=3)
  with pytest.raises(UserError, match="different architecture"):
    checkpoint.check_architecture(str(tmp_path), _config(5, **{"model.features": 24}))


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
  c = _config(10, **{"eval.step": 5})
  evaluate.run(c, str(tmp_path))
  assert json.loads((tmp_path / "eval" / "5.json").read_text())["step"] == 5
  assert int(checkpoint.restore_trained(c, str(tmp_path))[1].step) == 5
  _, latest, _ = pj.load(str(tmp_path))
  _, fifth, _ = pj.load(str(tmp_path), step=5)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(latest), jax.tree_util.tree_leaves(fifth)))
