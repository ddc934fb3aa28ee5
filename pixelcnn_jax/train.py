"""`train_and_evaluate(config, workdir)`: the training loop, top to bottom."""

import contextlib
import logging
import time

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from pixelcnn_jax import checkpoint, config_base, datasets, evaluate, generate
from pixelcnn_jax import input_pipeline, preemption
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.likelihood import bits_per_dim
from pixelcnn_jax.metric_writer import MetricWriter

log = logging.getLogger(__name__)


def make_train_step(model, tx, ema_decay: float, mesh, state_sharding):
  """The jitted step; `state_sharding` is a TrainState of shardings."""
  batch = mesh_lib.batch_sharding(mesh)

  def step(state: ts.TrainState, images, h):
    def loss_fn(params):
      logits = model.apply({"params": params}, images, h=h)
      return jnp.mean(bits_per_dim(logits, images))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = optax.incremental_update(params, ema, step_size=1.0 - ema_decay)
    new_state = ts.TrainState(step=state.step + 1, params=params,
                              opt_state=opt_state, ema_params=ema)
    return new_state, {"train_bpd": loss, "grad_norm": optax.tree.norm(grads)}

  return jax.jit(step, in_shardings=(state_sharding, batch, batch),
                 out_shardings=(state_sharding, mesh_lib.replicated(mesh)),
                 donate_argnums=0)


def setup(config, mesh):
  """(model, optimizer, state shardings, jitted train step) for `config` on
  `mesh`: the state is replicated, or split over the fsdp axis if it has one."""
  model = ts.make_model(config.model, config.data.image_size)
  tx = ts.make_optimizer(config.train)
  shardings = mesh_lib.state_sharding(mesh, ts.state_shapes(config, model, tx))
  step = make_train_step(model, tx, config.train.ema_decay, mesh, shardings)
  return model, tx, shardings, step


def fresh_state(config, model, tx, shardings) -> ts.TrainState:
  """A new TrainState from config.seed, initialised directly in place."""
  return jax.jit(lambda k: ts.create_state(config, model, tx, k),
                 out_shardings=shardings)(jax.random.PRNGKey(config.seed))


def _eta(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def train_and_evaluate(config, workdir: str) -> ts.TrainState:
  config_base.validate(config)
  t = config.train
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch(t.batch_size, mesh, "train.batch_size")
  mesh_lib.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
  checkpoint.prepare_workdir(workdir, config)
  train_split = datasets.open_for_model(config, config.data.train_split)
  eval_split = datasets.open_for_model(config, config.data.eval_split)

  model, tx, shardings, train_step = setup(config, mesh)
  batch_sharding = mesh_lib.batch_sharding(mesh)
  writer = MetricWriter(workdir)
  with contextlib.ExitStack() as stack:
    mngr = stack.enter_context(checkpoint.manager(workdir, config))
    if mngr.latest_step() is not None:
      state = checkpoint.restore(
          mngr, checkpoint.abstract_state(config, model, tx, mesh))
      log.info("resumed from step %d in %s", int(state.step), workdir)
    else:
      state = fresh_state(config, model, tx, shardings)
    first_step = int(state.step)
    log.info("model: %d parameters; mesh %s; global batch %d over %d processes",
             ts.param_count(state.params), dict(mesh.shape), t.batch_size,
             jax.process_count())
    writer.write(first_step, {"num_params": ts.param_count(state.params)})

    eval_step = evaluate.make_eval_step(model, mesh, shardings.params)
    stream = input_pipeline.TrainStream(train_split, t.batch_size, config.seed,
                                        config.model)
    batches = stream.iterate(first_step)
    sample_key = jax.random.PRNGKey(config.sample.seed)
    window, window_start = [], time.perf_counter()
    deadline = time.monotonic() + t.time_limit_s if t.time_limit_s > 0 else None
    sigterm = stack.enter_context(preemption.StopOnSigterm())
    for step in range(first_step + 1, t.num_steps + 1):
      batch = mesh_lib.to_global(next(batches), batch_sharding)
      state, metrics = train_step(state, batch["image"], batch["h"])
      window.append(metrics)
      preempted, out_of_time = preemption.agree(
          (sigterm.requested, deadline is not None and time.monotonic() > deadline),
          step, t.log_every)
      if preempted:
        mngr.save(step, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()
        writer.close()
        raise preemption.Preempted(f"SIGTERM: saved step {step} in {workdir}; "
                                   "rerun to resume")
      # A budgeted run ends like a finished one: logged, saved, evaluated, sampled.
      last = step == t.num_steps or out_of_time

      if step % t.log_every == 0 or last:
        means = {k: float(jnp.mean(jnp.stack([m[k] for m in window])))
                 for k in window[0]}
        elapsed = time.perf_counter() - window_start
        steps_per_s = len(window) / elapsed
        writer.write(step, {**means, "steps_per_s": steps_per_s,
                            "img_per_s": steps_per_s * t.batch_size})
        log.info("step %d/%d  train_bpd %.4f  grad_norm %.3f  %.2f steps/s  "
                 "%.0f img/s  ETA %s", step, t.num_steps, means["train_bpd"],
                 means["grad_norm"], steps_per_s, steps_per_s * t.batch_size,
                 _eta((t.num_steps - step) / steps_per_s))
        window, window_start = [], time.perf_counter()

      mngr.save(step, args=ocp.args.StandardSave(state), force=last)

      side_start = time.perf_counter()
      if step % t.eval_every == 0 or last:
        bpd, count = evaluate.evaluate(eval_step, state.eval_params(), eval_split,
                                       config, mesh)
        writer.write(step, {"eval_bpd": bpd})
        evaluate.write_result(workdir, step, config.data.eval_split, bpd, count)
        log.info("step %d  eval_bpd %.6f over %d %s examples", step, bpd, count,
                 config.data.eval_split)

      if step % t.sample_every == 0 or last:
        path = generate.draw_grid(model, state.eval_params(), config, eval_split,
                                  mesh, step, workdir, sample_key)
        log.info("step %d  samples -> %s", step, path)
      window_start += time.perf_counter() - side_start  # Keep img/s about training.
      if last:
        if step < t.num_steps:
          log.info("stopped at step %d: train.time_limit_s=%s reached", step,
                   t.time_limit_s)
        break
    mngr.wait_until_finished()
  writer.close()
  log.info("process %d: params fingerprint %.10e", jax.process_index(),
           mesh_lib.params_fingerprint(state.params))
  return state
