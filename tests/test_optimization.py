"""The optimizer, its learning-rate schedule, the debiased EMA and the time budget."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pixelcnn_jax import budget, config_base
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.progress import Progress


def _train_cfg(**kw):
  cfg = config_base.base().train
  cfg.update(dict(dict(learning_rate=3e-3, warmup_steps=7, grad_clip=1.0, weight_decay=0.0,
                       optimizer="adamw", muon_products="float32"), **kw))
  return cfg


@pytest.mark.parametrize("warmup,horizon", [(7, 50), (0, 20), (30, 10)])
def test_schedule_is_optax_warmup_cosine(warmup, horizon):
  cfg = _train_cfg(warmup_steps=warmup)
  reference = optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, min(warmup, horizon - 1), horizon, 0.01 * cfg.learning_rate)
  steps = np.arange(horizon + 5)
  ours = jax.vmap(lambda s: ts.learning_rate(s, horizon, cfg))(steps)
  np.testing.assert_allclose(ours, jax.vmap(reference)(steps), rtol=1e-5, atol=1e-9)


def test_ema_is_optax_debiased_ema_from_the_first_step():
  decay = 0.999
  params = [{"w": jnp.full((3,), float(i) ** 2)} for i in range(1, 40)]
  reference = optax.ema(decay, debias=True)
  ref_state = reference.init(params[0])
  ema = params[0]  # Any start: the first update replaces it.
  for t, p in enumerate(params, start=1):
    expected, ref_state = reference.update(p, ref_state)
    ema = ts.update_ema(ema, p, t, decay)
    np.testing.assert_allclose(ema["w"], expected["w"], rtol=1e-4)
  # After 39 steps of a 0.999 EMA, the zero-debiased average is near the
  # plain mean of the params seen, not near the first ones.
  assert abs(float(ema["w"][0]) - np.mean([i ** 2 for i in range(1, 40)])) < 20


def test_optimizer_is_adamw_with_decay_on_kernels_only():
  cfg = _train_cfg(weight_decay=0.1, grad_clip=1e9)
  params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}
  grads = {"kernel": jnp.full((2, 3), 0.5), "bias": jnp.full((3,), 0.5)}
  lr = 1e-2
  direction, _ = ts.make_optimizer(cfg).update(grads, ts.make_optimizer(cfg).init(params),
                                               params)
  ours = jax.tree_util.tree_map(lambda d: -lr * d, direction)
  adamw = optax.adamw(lr, weight_decay=0.1,
                      mask=lambda p: jax.tree_util.tree_map(lambda x: x.ndim > 1, p))
  theirs, _ = adamw.update(grads, adamw.init(params), params)
  for k in params:
    np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6)
  assert float(ours["kernel"][0, 0]) < float(ours["bias"][0])  # Decay on kernels only.


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_norm", [1e9, 0.3])
def test_clip_is_optax_clip_by_global_norm_with_its_state(fused, max_norm):
  tree = {"kernel": jax.random.normal(jax.random.PRNGKey(0), (5, 3, 7)),
          "bias": jnp.arange(7.0) - 3, "head": {"w": jnp.full((2, 4), -0.25)}}
  np.testing.assert_allclose(ts.global_norm(tree, fused), optax.tree.norm(tree), rtol=1e-6)
  ours, theirs = ts.clip_by_global_norm(max_norm, fused), optax.clip_by_global_norm(max_norm)
  assert jax.tree_util.tree_structure(ours.init(tree)) == \
      jax.tree_util.tree_structure(theirs.init(tree))
  clipped, _ = ours.update(tree, ours.init(tree))
  expected, _ = theirs.update(tree, theirs.init(tree))
  for a, b in zip(jax.tree_util.tree_leaves(clipped), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert float(optax.tree.norm(clipped)) == pytest.approx(min(max_norm, float(
      optax.tree.norm(tree))), rel=1e-6)


def test_the_norms_are_one_reduction_unless_the_state_is_split(monkeypatch):
  tree = {f"w{i}": jnp.full((64, 8 + i), 0.5 + i) for i in range(12)}
  def reductions(fused):
    text = jax.jit(lambda t: ts.global_norm(t, fused)).lower(tree).as_text()
    return text.count("stablehlo.reduce")
  assert reductions(True) == 1
  assert reductions(False) == 12
  # Leaves over the limit keep a reduction each: 64 x 16 and up, four of them.
  monkeypatch.setattr(ts, "FUSED_LEAF_SIZE", 64 * 15)
  assert reductions(True) == 1 + 4
  np.testing.assert_allclose(ts.global_norm(tree), optax.tree.norm(tree), rtol=1e-6)
  mesh = lambda data, fsdp: jax.sharding.AbstractMesh((data, fsdp), ("data", "fsdp"))
  assert ts.fused_norm(None) and ts.fused_norm(mesh(4, 1))
  assert not ts.fused_norm(mesh(2, 2))


def _muon_case():
  m = config_base.base().model
  m.update(num_layers=3, features=12, kernel_size=3, channels=3, head_features=12,
           conditioning="class", num_classes=10, channel_align=1)
  model = ts.make_model(m, (6, 6))
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 3), jnp.uint8),
                    h=jnp.zeros((1,), jnp.int32))["params"]


def test_muon_takes_the_stacks_matrices_and_adam_the_rest():
  params = _muon_case()
  names = lambda tree: sorted(jax.tree_util.keystr(path)
                              for path, _ in jax.tree_util.tree_leaves_with_path(tree))
  muon = sorted(jax.tree_util.keystr(path) for path, p in jax.tree_util.tree_leaves_with_path(
      params) if ts.muon_label(path, p) == "muon")
  assert muon == sorted(f"['layers_{i}']['{m}']['kernel']" for i in range(3)
                        for m in ("v_conv", "h_conv", "v_to_h", "h_out")
                        if i > 0 or m in ("v_to_h", "h_out"))
  # Class conditioning, the head and every bias stay with Adam.
  assert any("v_cond" in k for k in names(params)) and "head_out" in str(names(params))


def test_muon_orthogonalises_and_decays_its_matrices_only():
  params = _muon_case()
  cfg = _train_cfg(optimizer="muon", weight_decay=0.1, grad_clip=1e9)
  tx = ts.make_optimizer(cfg)
  # A gradient whose singular values span 1 to 1e-2: Muon gives every
  # direction the same step, at AdamW's usual RMS of 0.2.
  u, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(72, 24)))
  v, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(24, 24)))
  g = (u * np.geomspace(1, 1e-2, 24)) @ v.T
  grads = jax.tree_util.tree_map(jnp.zeros_like, params)
  grads["layers_1"]["v_conv"]["kernel"] = jnp.asarray(g.reshape(2, 3, 12, 24), jnp.float32)
  grads["head_out"]["kernel"] = jnp.full_like(params["head_out"]["kernel"], 0.5)
  direction, _ = tx.update(grads, tx.init(params), params)
  conv = np.asarray(direction["layers_1"]["v_conv"]["kernel"]
                    - 0.1 * params["layers_1"]["v_conv"]["kernel"]).reshape(72, 24)
  spread = np.linalg.svd(conv, compute_uv=False)
  assert spread.max() / spread.min() < 2
  assert 0.1 < np.sqrt(np.mean(conv ** 2)) < 0.3
  # Adam steps elementwise, undecayed; a Muon matrix with no gradient only decays.
  head = np.asarray(direction["head_out"]["kernel"])
  np.testing.assert_allclose(head, head.flat[0], rtol=1e-6)
  np.testing.assert_allclose(direction["layers_2"]["h_out"]["kernel"],
                             0.1 * params["layers_2"]["h_out"]["kernel"], rtol=1e-5)
  np.testing.assert_array_equal(direction["layers_0"]["v_conv"]["kernel"], 0)


def _leaf_by_leaf_muon(weight_decay):
  """optax.contrib.muon on the params themselves, each kernel on its own."""
  dims = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, p: optax.contrib.MuonDimensionNumbers(tuple(range(p.ndim - 1)), p.ndim - 1)
      if ts.muon_label(path, p) == "muon" else None, params)
  return optax.chain(optax.clip_by_global_norm(1e9), optax.contrib.muon(
      learning_rate=-1.0, weight_decay=weight_decay, muon_weight_dimension_numbers=dims,
      consistent_rms=ts.MUON_RMS))


def test_muon_on_stacked_kernels_is_muon_leaf_by_leaf_in_fewer_products():
  params = _muon_case()
  ours = ts.make_optimizer(_train_cfg(optimizer="muon", weight_decay=0.1, grad_clip=1e9))
  theirs = _leaf_by_leaf_muon(0.1)
  ours_state, theirs_state = ours.init(params), theirs.init(params)
  for seed in range(3):
    grads = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.PRNGKey(seed), p.shape, p.dtype), params)
    ours_dir, ours_state = jax.jit(ours.update)(grads, ours_state, params)
    theirs_dir, theirs_state = jax.jit(theirs.update)(grads, theirs_state, params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
                           ours_dir, theirs_dir)
    # The same state, leaf by leaf: checkpoints of either restore into the other.
    assert (jax.tree_util.tree_structure(ours_state)
            == jax.tree_util.tree_structure(theirs_state))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                           ours_state, theirs_state)
  # Ten kernels, in four groups of one shape: layers 1 and 2's convolutions,
  # and all three layers' v_to_h and h_out.
  products = lambda tx, state: str(jax.make_jaxpr(tx.update)(grads, state, params)).count(
      "dot_general")
  assert products(theirs, theirs_state) * 4 == products(ours, ours_state) * 10


def test_muon_products_in_bf16_only_where_asked():
  params = _muon_case()
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  def products(muon_products):
    tx = ts.make_optimizer(_train_cfg(optimizer="muon", muon_products=muon_products))
    hlo = jax.jit(tx.update).lower(grads, tx.init(params), params).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    return len(dots), sum("lhs_precision_type = bf16" in line for line in dots)
  total, in_bf16 = products("bfloat16")
  assert total > 0 and in_bf16 == total
  assert products("float32") == (total, 0)


COSTS = budget.Costs(step_s=0.1, eval_s=5.0, sample_s=20.0)


def test_horizon_fits_the_budget_with_every_eval_and_grid_still_due():
  # At step 200, 60 s in, budget 600 s: 540 s left; evals every 1,000 steps.
  h = budget.fit_horizon(60.0, 200, 600.0, COSTS, eval_every=1000, sample_every=10**9,
                         max_steps=10**6)
  end = budget.predicted_end_s(60.0, 200, h, COSTS, 1000, 10**9)
  assert end <= 600.0 < budget.predicted_end_s(60.0, 200, h + 1, COSTS, 1000, 10**9)
  # 540 s = 4,900 steps * 0.1 + 6 evals (1,000 ... 5,000 and the final) * 5
  # + the final grid (20 s).
  assert h == 5_100
  assert budget.fit_horizon(60.0, 200, 600.0, COSTS, 1000, 10**9, max_steps=1000) == 1000
  assert budget.fit_horizon(599.0, 200, 600.0, COSTS, 1000, 10**9, 10**6) == 200


def test_eval_and_grid_counts():
  # (200, 3000]: evals at 1000, 2000, 3000 (final coincides), grids at 3000 only.
  assert budget.predicted_end_s(0.0, 200, 3000, COSTS, 1000, 10**9) == pytest.approx(
      2800 * 0.1 + 3 * 5.0 + 20.0)
  assert budget.predicted_end_s(0.0, 200, 3001, COSTS, 1000, 10**9) == pytest.approx(
      2801 * 0.1 + 4 * 5.0 + 20.0)


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_progress_speed_excludes_side_work_and_eta_is_steady():
  clock = FakeClock()
  progress = Progress(0, clock)
  metric = {"train_bpd": jnp.float32(5.0)}
  for _ in range(10):  # First window: compilation, 10 steps in 30 s.
    progress.add(metric)
  clock.now = 30.0
  assert progress.close_window(10)["steps_per_s"] == pytest.approx(10 / 30)
  for window in range(3):  # Then 10 steps in 1 s, plus a 9 s eval each window.
    for _ in range(10):
      progress.add(metric)
    clock.now += 10.0
    progress.exclude(9.0)
    means = progress.close_window(20 + 10 * window)
    assert means["steps_per_s"] == pytest.approx(10.0)
    assert means["train_bpd"] == 5.0
  # Wall-clock rate since the first window: 30 steps in 30 s, side work included.
  assert progress.eta_s(40, 100, means["steps_per_s"]) == pytest.approx(60.0)


def test_the_refit_comes_at_a_logging_step_after_a_quarter_of_the_budget():
  # 60 s in at step 200 and 0.1 s a step: a quarter of 600 s is 900 steps on.
  assert budget.refit_step(60.0, 200, 600.0, 0.1, log_every=100) == 1100
  assert budget.refit_step(60.0, 200, 600.0, 0.1, log_every=300) == 1200
  # Already past the quarter: the next logging step.
  assert budget.refit_step(200.0, 200, 600.0, 0.1, log_every=100) == 300


def test_speed_counts_training_time_only():
  now = [0.0]
  progress = Progress(0, clock=lambda: now[0])
  for window_s, side_s in ((2.0, 0.0), (5.0, 1.0)):  # 100 steps each.
    for _ in range(100):
      progress.add({"loss": jnp.float32(1.0)})
    now[0] += window_s
    progress.exclude(side_s)
    progress.close_window(100)
  assert progress.trained == (200, pytest.approx(6.0))
