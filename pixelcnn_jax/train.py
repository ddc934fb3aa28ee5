"""`train_and_evaluate(config, workdir)`: the training loop, top to bottom."""

import contextlib
import dataclasses
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from pixelcnn_jax import budget, checkpoint, config_base, datasets, evaluate, grids
from pixelcnn_jax import input_pipeline, objectives, preemption, workdir_lock
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.errors import UserError
from pixelcnn_jax.metric_writer import MetricWriter
from pixelcnn_jax.progress import Progress, format_duration

log = logging.getLogger(__name__)

class Diverged(UserError):
  """A non-finite or runaway loss, gradient or weight; nothing after it is saved."""


def microbatch_value_and_grad(loss_fn, n: int, sharding):
  """value_and_grad of loss_fn(params, images, h, key), a batch mean, taken
  over n equal slices of the batch one at a time and averaged: the same
  step in about 1/n of the activations' memory. Slice i holds rows i, i+n,
  ..., so every device keeps its own rows; its dropout key is key folded
  with i."""
  grad_fn = jax.value_and_grad(loss_fn)
  if n == 1:
    return grad_fn

  def split(x):  # [B, ...] -> [n, B/n, ...]
    return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)

  def value_and_grad(params, images, h, key):
    def add(total, i_slice):
      i, (images_i, h_i) = i_slice
      images_i, h_i = jax.lax.with_sharding_constraint((images_i, h_i), sharding)
      value = grad_fn(params, images_i, h_i, jax.random.fold_in(key, i))
      return jax.tree_util.tree_map(jnp.add, total, value), None

    zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
    slices = jax.tree_util.tree_map(split, (images, h))
    total, _ = jax.lax.scan(add, zeros, (jnp.arange(n), slices))
    return jax.tree_util.tree_map(lambda v: v / n, total)

  return value_and_grad


def make_train_step(model, objective, tx, train_cfg, mesh, state_sharding):
  """The jitted step(state, images, h, dropout_key); `state_sharding` is a
  TrainState of shardings."""
  batch = mesh_lib.batch_sharding(mesh)
  replicated = mesh_lib.replicated(mesh)

  def loss_fn(params, images, h, key):
    return jnp.mean(objective.per_example(model, {"params": params}, images, h, True,
                                          {"dropout": key}))

  value_and_grad = microbatch_value_and_grad(loss_fn, train_cfg.microbatches, batch)
  fused = ts.fused_norm(mesh)

  def step(state: ts.TrainState, images, h, dropout_key):
    loss, grads = value_and_grad(state.params, images, h,
                                 jax.random.fold_in(dropout_key, state.step))
    direction, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = ts.learning_rate(state.step, state.horizon, train_cfg)
    params = optax.apply_updates(
        state.params, jax.tree_util.tree_map(lambda d: -lr * d, direction))
    ema = state.ema_params
    if ema is not None:
      ema = ts.update_ema(ema, params, state.step + 1, train_cfg.ema_decay)
    grad_norm = ts.global_norm(grads, fused)
    # A finite loss and gradient can still step to inf weights (or weights
    # whose norm overflows): that state must not be saved either.
    healthy = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
               & (loss < objective.runaway) & jnp.isfinite(ts.global_norm(params, fused)))
    diverged_at = jnp.where((state.diverged_at == 0) & ~healthy, state.step + 1,
                            state.diverged_at)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema, diverged_at=diverged_at)
    return new_state, {f"train_{objective.name}": loss, "grad_norm": grad_norm,
                       "learning_rate": lr}

  return jax.jit(step, in_shardings=(state_sharding, batch, batch, replicated),
                 out_shardings=(state_sharding, replicated), donate_argnums=0)


def setup(config, mesh):
  """(model, optimizer, state shardings, jitted train step) for `config` on
  `mesh`: the state is replicated, or split over the fsdp axis if it has one."""
  model = ts.make_model(config.model, config.data.image_size)
  tx = ts.make_optimizer(config.train, mesh)
  shardings = mesh_lib.state_sharding(mesh, ts.state_shapes(config, model, tx))
  step = make_train_step(model, objectives.for_model(config.model), tx, config.train,
                         mesh, shardings)
  return model, tx, shardings, step


def fresh_state(config, model, tx, shardings) -> ts.TrainState:
  """A new TrainState from config.seed, initialised directly in place."""
  return jax.jit(lambda k: ts.create_state(config, model, tx, k),
                 out_shardings=shardings)(jax.random.PRNGKey(config.seed))


def stop_if_diverged(state, mngr, objective) -> None:
  """Raises Diverged if any step so far was unhealthy (one scalar read)."""
  bad = int(state.diverged_at)
  if bad:
    checkpoint.wait(mngr)
    latest = mngr.latest_step()
    raise Diverged(
        f"training diverged at step {bad}: non-finite or runaway (> "
        f"{objective.runaway:g} {objective.label}) loss, gradient or weights; "
        + (f"checkpoint {latest} is the latest and is intact" if latest is not None
           else "no checkpoint was saved")
        + "; lower train.learning_rate or raise train.warmup_steps")


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def train_and_evaluate(config, workdir: str) -> ts.TrainState:
  start = time.perf_counter()
  config_base.validate(config)
  t = config.train
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch(t.batch_size, mesh, "train.batch_size")
  devices = mesh_lib.batch_devices(mesh)
  if (t.batch_size // t.microbatches) % devices:
    raise UserError(f"train.batch_size={t.batch_size} in train.microbatches="
                    f"{t.microbatches} slices of {t.batch_size // t.microbatches}: a "
                    f"slice must be divisible by the {devices} devices of the batch axes")
  mesh_lib.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
  checkpoint.prepare_workdir(workdir)
  with contextlib.ExitStack() as stack:
    stack.enter_context(workdir_lock.hold(workdir))
    train_split = datasets.open_for_model(config, config.data.train_split)
    eval_split = datasets.open_for_model(config, config.data.eval_split)
    if config.data.eval_split == config.data.train_split:
      log.warning("data.eval_split is the training split %r: the held-out numbers, the "
                  "best checkpoint and the choice of live or EMA weights come from "
                  "images this run trains on", config.data.eval_split)

    model, tx, shardings, train_step = setup(config, mesh)
    objective = objectives.for_model(config.model)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    writer = MetricWriter(workdir)
    mngr = stack.enter_context(checkpoint.managed(workdir, config))
    state = checkpoint.restore_for_training(
        mngr, config, checkpoint.abstract_state(config, model, tx, mesh), workdir)
    if state is None:
      state = fresh_state(config, model, tx, shardings)
    first_step = int(state.step)
    # A budgeted run that fixed its horizon keeps it; otherwise the schedule
    # follows this run's config, so that a run can be extended.
    fixed = t.time_budget_s > 0 and int(state.horizon) != ts.schedule_horizon(t)
    if not fixed:
      state = state.replace(horizon=jax.device_put(
          jnp.int32(ts.schedule_horizon(t)), shardings.horizon))
    end = int(state.horizon) if fixed else t.num_steps
    log.info("model: %d parameters; mesh %s; global batch %d over %d processes",
             ts.param_count(state.params), dict(mesh.shape), t.batch_size,
             jax.process_count())
    writer.write(first_step, {"num_params": ts.param_count(state.params)})

    eval_step = evaluate.make_eval_step(model, objective, mesh, shardings.params)
    stream = input_pipeline.TrainStream(train_split, t.batch_size, config.seed,
                                        config.model, config.data.random_flip,
                                        config.data.random_shift)
    batches = stream.iterate(first_step)
    dropout_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    sample_key = jax.random.PRNGKey(config.sample.seed)
    # The weights that the latest eval found better; grids are drawn with them.
    chosen = checkpoint.choose_weights(None, state.ema_params is not None)
    both_weights = lambda: {"live": state.params, "ema": state.ema_params}
    evaluate_both = lambda: evaluate.evaluate_weights(
        eval_step, both_weights(), eval_split, config, mesh)
    # Training images in eval mode (train.eval_train_examples): near the train
    # loss, a gap to held-out is overfitting; near held-out, it is dropout's.
    evaluate_fit = lambda: evaluate.evaluate_weights(
        eval_step, both_weights(), train_split, config, mesh, t.eval_train_examples)
    draw_grid = lambda: grids.draw_grid(model, state.weights(chosen), config,
                                        eval_split, mesh, step,
                                        os.path.join(workdir, "samples"), sample_key)
    progress = Progress(first_step)
    probe = budget.probe_step(t.log_every) if t.time_budget_s > 0 and not fixed else None
    costs, trained_at_probe, refit_at = None, None, None  # Set at the probe.
    deadline = time.monotonic() + t.time_limit_s if t.time_limit_s > 0 else None
    sigterm = stack.enter_context(preemption.StopOnSigterm())
    step = first_step
    log.info("compiling the train step: batch %d of %s images", t.batch_size,
             "x".join(map(str, (*config.data.image_size, config.model.channels))))
    compiling = time.perf_counter()
    while step < end:
      step += 1
      batch = mesh_lib.to_global(next(batches), batch_sharding)
      state, metrics = train_step(state, batch["image"], batch["h"], dropout_key)
      if step == first_step + 1:
        jax.block_until_ready(metrics)
        log.info("train step compiled and ran in %.1f s", time.perf_counter() - compiling)
      progress.add(metrics)
      preempted, out_of_time = preemption.agree(
          (sigterm.requested, deadline is not None and time.monotonic() > deadline),
          step, t.log_every)
      if preempted:
        stop_if_diverged(state, mngr, objective)
        checkpoint.save(mngr, step, state, config, force=True)
        checkpoint.wait(mngr)
        writer.close()
        raise preemption.Preempted(f"SIGTERM: saved step {step} in {workdir}; "
                                   "rerun to resume")
      # A run out of time ends like a finished one: logged, saved, evaluated, sampled.
      last = step == end or out_of_time
      probing = step == probe

      if step % t.log_every == 0 or last:
        means = progress.close_window(step)
        stop_if_diverged(state, mngr, objective)
        writer.write(step, {**means, "img_per_s": means["steps_per_s"] * t.batch_size})
        log.info("step %d/%d  train_%s %.4f  grad_norm %.3f  lr %.2e  %.2f steps/s  "
                 "%.0f img/s  ETA %s", step, end, objective.name,
                 means[f"train_{objective.name}"],
                 means["grad_norm"], means["learning_rate"], means["steps_per_s"],
                 means["steps_per_s"] * t.batch_size,
                 format_duration(progress.eta_s(step, end, means["steps_per_s"])))

      side_start = time.perf_counter()
      if step % t.eval_every == 0 or last or probing:
        stop_if_diverged(state, mngr, objective)
        results, count = evaluate_both()
        metrics = evaluate.as_metrics(results)
        chosen = checkpoint.choose_weights(metrics, state.ema_params is not None)
        writer.write(step, evaluate.as_metrics(results, f"eval_{objective.name}"))
        evaluate.write_result(os.path.join(workdir, "eval"), step,
                              config.data.eval_split, objective.label, results, count,
                              chosen, evaluate.data_source(config))
        log.info("step %d  eval_%s %.6f over %d %s examples (%s; %.1f s)", step,
                 objective.name, results[chosen], count, config.data.eval_split,
                 evaluate.describe(results, chosen), time.perf_counter() - side_start)
        if t.eval_train_examples:
          fit, fit_count = evaluate_fit()
          writer.write(step, evaluate.as_metrics(fit, f"eval_train_{objective.name}"))
          log.info("step %d  eval_train_%s %.6f over %d training images, dropout off (%s)",
                   step, objective.name, fit[chosen], fit_count, evaluate.describe(fit, chosen))
        checkpoint.save(mngr, step, state, config, metrics, force=True)
      elif mngr.should_save(step):
        stop_if_diverged(state, mngr, objective)
        checkpoint.save(mngr, step, state, config)

      if step % t.sample_every == 0 or last or probing:
        grid_start = time.perf_counter()
        path = draw_grid()
        if path:
          log.info("step %d  samples (%s weights; %.1f s) -> %s", step, chosen,
                   time.perf_counter() - grid_start, path)

      refit = step == refit_at and not last
      if probing or refit:
        if probing:  # Timed again now that both are compiled: later ones cost this much.
          costs = budget.Costs(
              step_s=1.0 / means["steps_per_s"], sample_s=_seconds(draw_grid),
              eval_s=_seconds(evaluate_both) + (_seconds(evaluate_fit)
                                                if t.eval_train_examples else 0.0))
          trained_at_probe = progress.trained
        else:  # The training speed since the probe.
          steps, seconds = (a - b for a, b in zip(progress.trained, trained_at_probe))
          costs = dataclasses.replace(costs, step_s=seconds / steps)
        elapsed = time.perf_counter() - start
        end = budget.fit_horizon(elapsed, step, t.time_budget_s, costs, t.eval_every,
                                 t.sample_every, t.num_steps)
        refit_at = budget.refit_step(elapsed, step, t.time_budget_s, costs.step_s,
                                     t.log_every) if probing else None
        if jax.process_count() > 1:  # Each process timed its own: stop together.
          end, refit_at = (int(v) for v in multihost_utils.broadcast_one_to_all(
              np.array([end, refit_at or 0], np.int64)))
        state = state.replace(horizon=jax.device_put(jnp.int32(end), shardings.horizon))
        log.info("time budget %.0f s (%s): %.2f steps/s, eval %.1f s, sample grid %.1f s "
                 "-> learning-rate horizon fixed at step %d", t.time_budget_s,
                 "probe" if probing else "refit", 1.0 / costs.step_s, costs.eval_s,
                 costs.sample_s, end)
        writer.write(step, {"horizon": end})
        last = last or step >= end
      progress.exclude(time.perf_counter() - side_start)
      if last:
        if step < end:
          log.info("stopped at step %d: train.time_limit_s=%s reached", step,
                   t.time_limit_s)
        break
    checkpoint.wait(mngr)
  writer.close()
  log.info("process %d: params fingerprint %.10e; %s of wall-clock",
           jax.process_index(), mesh_lib.params_fingerprint(state.params),
           format_duration(time.perf_counter() - start))
  return state
