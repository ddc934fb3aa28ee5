"""Orbax checkpoints of a workdir: saving, keeping, verifying, and `pj.load`.

`<workdir>/ckpt/<step>/` holds the TrainState (`state`), the config it was
trained with (`config`, JSON) and two checksums of every array
(`fingerprints`), which every restore verifies: orbax stores none, and a
flipped bit would otherwise load silently. A step that was evaluated also
holds orbax's `metrics`: the objective (bits/dim for PixelCNNs) of the live
and the EMA weights on the eval split.

Kept: the newest `train.keep_checkpoints` steps and the step with the best
held-out objective. Saved: every `train.checkpoint_every` steps, at every eval,
at the end and on SIGTERM; never a diverged state (train.py checks first).

The saved config is the only record of the architecture: a run or an eval
with a config whose parameter tree differs is refused before any restore. A
resumed run also refuses another optimizer or split (config_base.SPLIT_KEYS)
and logs every other setting that changed.
The workdir may be any path etils.epath knows (gs://... on TPU pods).
"""

import contextlib
import logging
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from pixelcnn_jax import config_base, logs, output_dir
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)
policies = ocp.checkpoint_managers

BEST_METRIC = "eval_loss"
# The model keys that shape the parameter tree; dtype, dropout and the like
# may differ between training and evaluation.
PARAM_KEYS = ("kind", "code_dim", "encoder_features", "num_layers", "features",
              "kernel_size", "channels", "skip", "head_features", "conditioning",
              "num_classes", "cond_dim", "spatial_features")


class CheckpointError(UserError):
  """A checkpoint that cannot be read or fails its fingerprints."""


def prepare_workdir(workdir: str) -> None:
  why = output_dir.probe(workdir)  # On every process: each writes its own part.
  if why:
    raise UserError(f"workdir {workdir} is not writable: {why}")


def ckpt_dir(workdir: str) -> epath.Path:
  return epath.Path(workdir).absolute() / "ckpt"


def manager(workdir: str, config=None, read_only: bool = False) -> ocp.CheckpointManager:
  """The workdir's CheckpointManager; `config` sets the save and keep policy."""
  # A failed read or write leaves orbax callbacks that print tracebacks from
  # other threads, some before the error reaches us: filter them from the start.
  logs.drop_async_leftovers()
  with logs.quiet_absl():
    if read_only:
      if not ckpt_dir(workdir).exists():
        raise UserError(f"no checkpoint in workdir {workdir}")
      options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    else:
      t = config.train
      options = ocp.CheckpointManagerOptions(
          # Explicit, so that orbax adds no save of its own (e.g. at step 1).
          save_decision_policy=policies.FixedIntervalPolicy(t.checkpoint_every),
          preservation_policy=policies.AnyPreservationPolicy([
              policies.LatestN(t.keep_checkpoints),
              policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True,
                             n=1, keep_checkpoints_without_metrics=False)]),
          # best_fn makes orbax write the metrics to disk and find best_step().
          best_fn=lambda m: m[BEST_METRIC], best_mode="min",
          enable_async_checkpointing=True)
    return ocp.CheckpointManager(ckpt_dir(workdir), options=options)


@contextlib.contextmanager
def managed(workdir: str, config):
  """manager(workdir, config) for training: a failed save (a full disk, a lost
  mount) surfaces as one CheckpointError, and closing on the way out of
  another error never replaces it."""
  mngr = manager(workdir, config)
  try:
    yield mngr
  except BaseException:
    with contextlib.suppress(Exception):
      mngr.close()
    raise
  try:
    mngr.close()
  except Exception as e:
    raise _save_failed(mngr, e) from e


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits for the saves in flight; a failed one becomes a CheckpointError."""
  try:
    mngr.wait_until_finished()
  except Exception as e:
    raise _save_failed(mngr, e) from e


def _save_failed(mngr, e: Exception) -> CheckpointError:
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  # Tensorstore ends its messages with the OS's reason ("No space left on
  # device [os_error_code='28']"); that is the part a user needs.
  reason = text.rsplit(": ", 1)[-1] if "os_error_code" in text else text[:240]
  # Finished saves only: a failed one leaves a <step>.orbax-checkpoint-tmp.
  latest = [int(p.name) for p in mngr.directory.iterdir() if p.name.isdigit()]
  kept = f"checkpoint {max(latest)} is the latest intact one" if latest else \
      "no checkpoint was saved"
  return CheckpointError(f"cannot save a checkpoint in {mngr.directory}: {reason}; "
                         f"{kept}")


@jax.jit
def _checksums(tree):
  """Two uint32 checksums per array of its raw bits: their plain sum, and their
  sum weighted by odd position factors (so swaps and paired flips show too)."""
  def one(x):
    x = jnp.asarray(x)
    if x.dtype.itemsize != 4:
      x = x.astype(jnp.float32)
    words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * 2 + 1
    return jnp.stack([jnp.sum(words), jnp.sum(words * weights)])
  return jax.tree_util.tree_map(one, tree)


def fingerprints(state_parts: dict) -> dict:
  """{part: {array path: [sum, weighted sum]}} for the parts of a TrainState."""
  sums = jax.device_get(_checksums(state_parts))
  out = {}
  for part, tree in sums.items():
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out[part] = {jax.tree_util.keystr(path): [int(v) for v in value]
                 for path, value in leaves}
  return out


def _parts(state) -> dict:
  parts = {"step": state.step, "params": state.params, "opt_state": state.opt_state,
           "horizon": state.horizon, "diverged_at": state.diverged_at}
  if state.ema_params is not None:
    parts["ema_params"] = state.ema_params
  return parts


def save(mngr: ocp.CheckpointManager, step: int, state, config,
         metrics: Optional[dict] = None, force: bool = False) -> bool:
  """Saves (asynchronously) if the policy says so or `force`."""
  if not force and not mngr.should_save(step):
    return False
  args = ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                            config=ocp.args.JsonSave(config_base.config_json(config)),
                            fingerprints=ocp.args.JsonSave(fingerprints(_parts(state))))
  try:
    with logs.quiet_absl():
      return mngr.save(step, args=args, metrics=metrics, force=True)
  except Exception as e:  # The previous async save failed, or this one could not start.
    raise _save_failed(mngr, e) from e


def _unreadable(mngr, step: int, e: Exception) -> CheckpointError:
  first = (str(e).strip().splitlines() or [type(e).__name__])[0]
  if len(first) > 240:
    first = first[:240] + "..."
  return CheckpointError(f"checkpoint {step} ({mngr.directory / str(step)}) is "
                         f"unreadable: {type(e).__name__}: {first}")


def read_config(mngr: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
  """The config saved with `step`, over today's defaults, so that a key
  added since the checkpoint was written reads as its default."""
  try:
    saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  except Exception as e:  # Orbax raises many types for a damaged item.
    raise _unreadable(mngr, step, e) from e
  config = config_base.base()
  config.update(ml_collections.ConfigDict(saved.config))
  return config


def check_architecture(saved, config, where: str) -> None:
  """Refuses `config` if its parameter tree differs from the saved one's."""
  # Image size shapes the dense layers of encoders and of the spatial m(h).
  sized = config.model.conditioning == "spatial" or config.model.kind != "pixelcnn"
  keys = PARAM_KEYS + (("image_size",) if sized else ())
  get = lambda c, k: list(c.data.image_size) if k == "image_size" else c.model.get(k)
  diff = [k for k in keys if get(saved, k) != get(config, k)]
  if diff:
    detail = ", ".join(f"{k}: checkpoint {get(saved, k)!r} vs config {get(config, k)!r}"
                       for k in diff)
    raise UserError(f"{where} holds a different architecture ({detail}); "
                    "use a new --workdir")


def resolve_step(mngr: ocp.CheckpointManager, step) -> int:
  """A step number from 'latest', 'best', a number, or None (latest)."""
  steps = mngr.all_steps()
  if not steps:
    raise UserError(f"no checkpoint in {mngr.directory}")
  if step is None or step == "latest":
    return max(steps)
  if step == "best":
    best = [s for s in steps if (mngr.metrics(s) or {}).get(BEST_METRIC) is not None]
    if not best:
      raise UserError(f"no evaluated checkpoint in {mngr.directory}, so no 'best'; "
                      f"available: {sorted(steps)}")
    return min(best, key=lambda s: mngr.metrics(s)[BEST_METRIC])
  try:
    number = int(step)
  except (TypeError, ValueError):
    raise UserError(f"step must be 'latest', 'best' or a step number, got "
                    f"{step!r}") from None
  if number not in steps:
    raise UserError(f"no checkpoint for step {number} in {mngr.directory}; "
                    f"available: {sorted(steps)}")
  return number


def _verify(mngr, step: int, restored_parts: dict) -> None:
  try:
    expected = mngr.restore(
        step, args=ocp.args.Composite(fingerprints=ocp.args.JsonRestore())).fingerprints
  except Exception as e:
    raise _unreadable(mngr, step, e) from e
  actual = fingerprints(restored_parts)
  for part, sums in actual.items():
    for path, value in sums.items():
      if expected.get(part, {}).get(path) != value:
        raise CheckpointError(f"checkpoint {step} ({mngr.directory / str(step)}) is "
                              f"corrupt: {part}{path} fails its checksum")


def _restore(mngr, step: int, abstract_parts: dict) -> dict:
  """Restores and verifies the given parts of the TrainState at `step`, each
  array into the sharding of its abstract counterpart."""
  try:
    with logs.quiet_absl():
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(
              abstract_parts, partial_restore=True,
              restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_parts))))
  except Exception as e:
    raise _unreadable(mngr, step, e) from e
  parts = dict(restored.state)
  _verify(mngr, step, parts)
  return parts


def abstract_state(config, model, tx, mesh: Optional[jax.sharding.Mesh] = None):
  """The TrainState's shapes, each with its sharding on `mesh`
  (mesh_lib.state_sharding), or on the first device when there is no mesh."""
  shapes = ts.state_shapes(config, model, tx)
  if mesh is None:
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree_util.tree_map(lambda _: one, shapes)
  else:
    shardings = mesh_lib.state_sharding(mesh, shapes)
  return jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      shapes, shardings)


def restore_for_training(mngr, config, abstract, workdir: str):
  """The newest intact TrainState, or None in a workdir with no checkpoint.

  A newer checkpoint that is unreadable or corrupt is moved aside to
  `<workdir>/corrupt/<step>` (nothing is deleted), with one log line, and the
  run resumes from the one before it. When none is intact, nothing is moved
  and the run stops: starting afresh would bury the work behind them.
  """
  corrupt = []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      saved = read_config(mngr, step)
      check_architecture(saved, config, f"workdir {workdir}")
      changed = config_base.changes(saved, config)
      _check_resumable(changed, workdir)
      parts = _restore(mngr, step, _parts(abstract))
    except CheckpointError as e:
      log.warning("%s; falling back to an earlier checkpoint", e)
      corrupt.append(step)
      continue
    for bad in corrupt:
      _move_aside(mngr, bad, workdir)
    log.info("resumed from step %d in %s", step, workdir)
    if changed:
      log.info("settings changed since step %d: %s", step, ", ".join(
          f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
    return abstract.replace(**parts)
  if corrupt:
    raise UserError(f"no intact checkpoint in {mngr.directory} (steps "
                    f"{', '.join(map(str, corrupt))}), so none was moved; remove them to "
                    f"train from scratch there, or use a new --workdir")
  return None


def _check_resumable(changed: dict, workdir: str) -> None:
  if "train.optimizer" in changed:
    old, new = changed["train.optimizer"]
    raise UserError(f"workdir {workdir} was trained with train.optimizer={old!r}, "
                    f"whose state cannot continue as {new!r}; use a new --workdir")
  for key in config_base.SPLIT_KEYS:
    if key in changed:
      old, new = changed[key]
      raise UserError(f"workdir {workdir} was trained with {key}={old!r}, not "
                      f"{new!r}, which changes the images it trains on or is scored "
                      "on; use a new --workdir, or --mode=eval to score another split")


def _move_aside(mngr, step: int, workdir: str) -> None:
  wait(mngr)
  if jax.process_index() == 0:
    target = epath.Path(workdir) / "corrupt"
    target.mkdir(parents=True, exist_ok=True)
    (mngr.directory / str(step)).rename(target / str(step))
  if jax.process_count() > 1:  # The others reload only once it is gone.
    multihost_utils.sync_global_devices(f"pixelcnn_jax_moved_{step}")
  mngr.reload()


def choose_weights(metrics: Optional[dict], has_ema: bool, which: str = "auto") -> str:
  """'live' or 'ema': as asked, else the better on the eval split when this
  step was evaluated, else the EMA when kept."""
  if which == "ema" and not has_ema:
    raise UserError("weights 'ema' asked for, but this checkpoint keeps no EMA "
                    "(it was trained with train.ema_decay=0)")
  if not has_ema:
    return "live"
  if which != "auto":
    return which
  if metrics and f"{BEST_METRIC}_ema" in metrics:
    return "ema" if metrics[f"{BEST_METRIC}_ema"] <= metrics[f"{BEST_METRIC}_live"] \
        else "live"
  return "ema"


def restore_weights(workdir: str, config=None, step=None, mesh=None,
                    which: str = "auto"):
  """Inference weights of `workdir` at `step`, restoring no optimizer state.

  Returns (model, {"live": params, "ema": params or None}, step, chosen name,
  saved config). `config` defaults to the saved one; a given config must
  have the saved parameter tree. Arrays land on `mesh` (None: device 0).
  """
  with manager(workdir, read_only=True) as mngr:
    number = resolve_step(mngr, step)
    saved = read_config(mngr, number)
    config = saved if config is None else config
    check_architecture(saved, config, f"workdir {workdir}")
    model = ts.make_model(config.model, config.data.image_size)
    abstract = abstract_state(saved, ts.make_model(saved.model, saved.data.image_size),
                              ts.make_optimizer(saved.train), mesh)
    parts = _parts(abstract)
    wanted = {k: parts[k] for k in ("step", "params", "ema_params") if k in parts}
    restored = _restore(mngr, number, wanted)
    chosen = choose_weights(mngr.metrics(number), "ema_params" in restored, which)
  weights = {"live": restored["params"], "ema": restored.get("ema_params")}
  return model, weights, number, chosen, saved


def load(workdir: str, step=None, weights: str = "auto", whole: bool = False):
  """(model, variables, config) of a trained workdir.

  step: None or "latest", "best" (lowest held-out objective), or a number.
  weights: "auto" (the better of live and EMA where the step was evaluated,
  else the EMA when kept), "live" or "ema".
  For an auto-encoder with a PixelCNN decoder, the model is the decoder, which
  pj.sample draws from given codes (h); with whole=True it is the auto-encoder,
  whose codes pj.autoencoder.encode gives.
  """
  if weights not in ("auto", *ts.WEIGHTS):
    raise UserError(f"weights must be 'auto', 'live' or 'ema', got {weights!r}")
  model, params, _, chosen, config = restore_weights(workdir, None, step, None, weights)
  if config.model.kind == "autoencoder" and not whole:
    return model.decoder, {"params": params[chosen]["decoder"]}, config
  return model, {"params": params[chosen]}, config
