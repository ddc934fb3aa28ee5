"""Orbax checkpoints in a workdir, its saved config, and `pj.load`.

A workdir holds `config.json` (the config it was trained with) and `ckpt/`.
It may be a local path or any path etils.epath knows (gs://... on TPU pods).
The saved model section is the architecture: a later run with a different one
is refused instead of failing deep inside a restore.
"""

import json
from typing import Optional

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.errors import UserError

CONFIG_FILE = "config.json"


def config_path(workdir: str) -> epath.Path:
  return epath.Path(workdir) / CONFIG_FILE


def prepare_workdir(workdir: str, config) -> None:
  """Creates the workdir, refuses a different architecture, saves the config."""
  try:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    probe = epath.Path(workdir) / f".write_test_{jax.process_index()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise UserError(f"workdir {workdir} is not writable: "
                    f"{e.strerror or e.__class__.__name__}") from e
  if config_path(workdir).exists():
    check_architecture(workdir, config)
  if jax.process_index() == 0:
    config_path(workdir).write_text(config.to_json(indent=2))


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  path = config_path(workdir)
  if not path.exists():
    raise UserError(f"no checkpoint in workdir {workdir} ({CONFIG_FILE} is missing)")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def check_architecture(workdir: str, config) -> None:
  saved = saved_config(workdir)
  ours = json.loads(config.model.to_json())
  theirs = json.loads(saved.model.to_json())
  ours["image_size"], theirs["image_size"] = (list(config.data.image_size),
                                              list(saved.data.image_size))
  diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
  if diff:
    detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs config {ours.get(k)!r}"
                       for k in diff)
    raise UserError(f"workdir {workdir} holds a different architecture ({detail}); "
                    "use a new --workdir")


def manager(workdir: str, config, read_only: bool = False) -> ocp.CheckpointManager:
  t = config.train
  options = ocp.CheckpointManagerOptions(
      max_to_keep=t.keep_checkpoints, save_interval_steps=t.checkpoint_every,
      enable_async_checkpointing=True, read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(epath.Path(workdir).absolute() / "ckpt",
                               options=options)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: Optional[int] = None):
  """Restores `step` (default: latest) into the shardings of `abstract_state`."""
  steps = mngr.all_steps()
  if not steps:
    raise UserError(f"no checkpoint in {mngr.directory}")
  step = max(steps) if step is None else step
  if step not in steps:
    raise UserError(f"no checkpoint for step {step} in {mngr.directory}; "
                    f"available: {sorted(steps)}")
  try:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f"checkpoint {mngr.directory}/{step} does not match this "
                    f"architecture: {str(e).splitlines()[0]}") from e


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


def restore_trained(config, workdir: str, mesh: Optional[jax.sharding.Mesh] = None,
                    step: Optional[int] = None):
  """(model, TrainState) of `workdir` at `step` (None: config.eval.step; a
  negative step: the latest), laid out on `mesh` (None: the first device);
  refuses a config whose architecture differs from the saved one."""
  step = config.eval.step if step is None else step
  step = None if step < 0 else step
  check_architecture(workdir, config)
  model = ts.make_model(config.model, config.data.image_size)
  tx = ts.make_optimizer(config.train)
  with manager(workdir, config, read_only=True) as mngr:
    state = restore(mngr, abstract_state(config, model, tx, mesh), step)
  return model, state


def load(workdir: str, step: Optional[int] = None):
  """(model, variables, config) of a trained workdir; EMA weights if kept."""
  config = saved_config(workdir)
  model, state = restore_trained(config, workdir, None, -1 if step is None else step)
  return model, {"params": state.eval_params()}, config
