"""A model's objective over a whole split (exact bits/dim for PixelCNNs),
`--mode=eval` on a checkpoint, and each image's bits/dim of images in
memory (`pj.image_bits_per_dim`)."""

import functools
import json
import logging
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from pixelcnn_jax import autoencoder, checkpoint, conditioning, config_base, datasets
from pixelcnn_jax import input_pipeline, objectives, output_dir
from pixelcnn_jax.likelihood import NUM_LEVELS
from pixelcnn_jax.model import GatedPixelCNN
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)


def make_eval_step(model, objective, mesh, params_sharding):
  batch = mesh_lib.batch_sharding(mesh)

  def step(params, images, h, mask):
    values = objective.per_example(model, {"params": params}, images, h, False, None)
    return jnp.sum(values * mask), jnp.sum(mask)

  return jax.jit(step, in_shardings=(params_sharding, batch, batch, batch),
                 out_shardings=mesh_lib.replicated(mesh))


def make_values_step(model, objective, mesh, params_sharding):
  """Each example's value, gathered to every process: eval.per_example."""
  batch = mesh_lib.batch_sharding(mesh)

  def step(params, images, h):
    return objective.per_example(model, {"params": params}, images, h, False, None)

  return jax.jit(step, in_shardings=(params_sharding, batch, batch),
                 out_shardings=mesh_lib.replicated(mesh))


def _global_batches(split, config, mesh, limit):
  """input_pipeline.eval_batches, each a global array over the mesh."""
  batch = mesh_lib.batch_sharding(mesh)
  for local in input_pipeline.eval_batches(split, config.eval.batch_size, config.model,
                                           limit):
    yield mesh_lib.to_global(local, batch)


def per_example(values_step, params, split, config, mesh) -> np.ndarray:
  """float32 [n]: the value of each of the first n examples of `split` (all,
  or data.eval_limit), in the split's order."""
  limit = config.data.eval_limit or None
  values = [values_step(params, g["image"], g["h"])
            for g in _global_batches(split, config, mesh, limit)]
  n = len(split) if limit is None else min(limit, len(split))
  # The padding that fills the last batch comes after every real example.
  return np.concatenate(jax.device_get(values)).astype(np.float32)[:n]


def evaluate(eval_step, params, split, config, mesh, limit: int = 0) -> tuple[float, int]:
  """(mean of the objective, number of examples) over `split`, or its first
  `limit` examples (default data.eval_limit; 0: all).

  Per-batch sums stay on the device until the end, so batches are dispatched
  without waiting, and are then added in float64 here, so the mean does not
  drift with the size of the split.
  """
  limit = limit or config.data.eval_limit or None
  sums = [eval_step(params, g["image"], g["h"], g["mask"])
          for g in _global_batches(split, config, mesh, limit)]
  totals = np.asarray(jax.device_get(sums), np.float64).reshape(-1, 2).sum(axis=0)
  return float(totals[0] / max(totals[1], 1.0)), int(totals[1])


def evaluate_weights(eval_step, weights: dict, split, config, mesh, limit: int = 0):
  """({"live": mean, "ema": mean when kept}, number of examples)."""
  results, count = {}, 0
  for name, params in weights.items():
    if params is not None:
      results[name], count = evaluate(eval_step, params, split, config, mesh, limit)
  return results, count


def image_bits_per_dim(model, variables, images, h=None, batch_size: int = 128,
                       mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """bits_per_dim of each image under a GatedPixelCNN (or a
  PixelCNNAutoEncoder: given the image's own code), float32 [N], in the
  images' order: `batch_size` images at a time (rounded up to a multiple of
  the mesh's devices, default all) through one jitted forward pass, the
  last batch padded so that one compilation serves them all.

  images: integer [N, H, W, C], values 0..255, C = model.channels, any H
  and W. h: as for model.apply, one row per image (labels [N] or vectors
  [N, D]), or None for an unconditional model. A batch's float32 logits take
  batch_size * H * W * C KiB, split over the devices; none are written for
  a bf16 model on a GPU whose head is at most 256 wide (head_loss).
  """
  whole = isinstance(model, autoencoder.PixelCNNAutoEncoder)
  pixelcnn = model.decoder if whole else model
  if not isinstance(pixelcnn, GatedPixelCNN):
    raise ValueError(f"image_bits_per_dim takes a GatedPixelCNN or a "
                     f"PixelCNNAutoEncoder, got {type(model).__name__}")
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  images = np.asarray(images)
  if (images.ndim != 4 or images.shape[-1] != pixelcnn.channels or not len(images)
      or not np.issubdtype(images.dtype, np.integer)):
    raise ValueError(f"images must be integers 0..255 [N, H, W, {pixelcnn.channels}] with "
                     f"N >= 1, got {images.dtype} {images.shape}")
  low, high = int(images.min()), int(images.max())
  if low < 0 or high >= NUM_LEVELS:
    raise ValueError(f"image values must be in 0..255, got {low}..{high}")
  num = len(images)
  if whole and h is not None:
    raise ValueError("an auto-encoder takes no h: its code comes from the images")
  if not whole:
    conditioning.check_on_host(h, model, num, "h")
  if mesh is None:
    mesh = mesh_lib.make_mesh({mesh_lib.DATA: -1})
  shards = mesh_lib.batch_devices(mesh)
  batch = -(-min(batch_size, num) // shards) * shards
  padded = -(-num // batch) * batch

  def put(a, i):
    return None if a is None else jax.device_put(a[i:i + batch],
                                                 mesh_lib.batch_sharding(mesh))

  # pj.load puts the weights on one device; jit needs them on the mesh's.
  variables = jax.device_put(variables, mesh_lib.replicated(mesh))
  images = mesh_lib.pad_rows(images.astype(np.uint8), padded)
  h = mesh_lib.pad_rows(None if h is None else np.asarray(h), padded)
  values = [_batch_bits_per_dim(model, variables, put(images, i), put(h, i))
            for i in range(0, padded, batch)]
  # Every process gets every value, also when the mesh spans several hosts.
  return np.concatenate([np.asarray(multihost_utils.process_allgather(v, tiled=True))
                         for v in values]).astype(np.float32)[:num]


@functools.partial(jax.jit, static_argnums=0)
def _batch_bits_per_dim(model, variables, images, h):
  return model.apply(variables, images, h=h, method="bits_per_dim")


def as_metrics(results: dict, prefix: str = "eval_loss") -> dict:
  """The best of the weights' results, and each of them, under `prefix`:
  checkpoints record eval_loss*, metrics.jsonl eval_<objective>*."""
  return {prefix: min(results.values()),
          **{f"{prefix}_{name}": value for name, value in results.items()}}


def data_source(config) -> dict:
  """What a split's name alone does not say about the images scored."""
  d = config.data
  return {"dataset": d.dataset,
          "location": os.path.realpath(d.npz_dir) if d.dataset == "npz" else d.tfds_data_dir,
          "holdout": d.holdout, "eval_limit": d.eval_limit}


def write_result(folder: str, step: int, split: str, label: str, results: dict,
                 count: int, chosen: str, source: dict, stem: str = "") -> str:
  """<folder>/<step>.json, or <stem>.json: `label` (e.g. bits_per_dim) of
  the chosen weights, and of each, and the data's `source`."""
  path = epath.Path(folder) / f"{stem or step}.json"
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(
        {"step": step, "split": split, label: results[chosen], "weights": chosen,
         "num_examples": count,
         **{f"{label}_{weights}": value for weights, value in results.items()},
         "data": source},
        indent=2))
  return str(path)


def result_stem(folder: str, step: int, split: str, source: dict) -> str:
  """`<step>_<split>`, or the first `<step>_<split>_N` that is free or holds
  a result of the same data: scoring another dataset's split of the same
  name (an out-of-distribution set, say) keeps the first one's result."""
  path = output_dir.unused(os.path.join(folder, f"{step}_{split}.json"),
                           lambda existing: _source_of(existing) == source)
  return os.path.splitext(os.path.basename(path))[0]


def _source_of(path) -> dict | None:
  try:
    return json.loads(path.read_text()).get("data")
  except (OSError, ValueError, AttributeError):
    return None


def describe(results: dict, chosen: str) -> str:
  return ", ".join(f"{name} {value:.6f}{' *' if name == chosen else ''}"
                   for name, value in results.items())


def run(config, workdir: str) -> float:
  """`--mode=eval`: the objective (bits/dim for PixelCNNs) on
  config.data.eval_split at config.eval.step, of the live and the EMA weights;
  the reported one is config.eval.weights ("auto": the better on the eval
  split during training)."""
  config_base.validate(config)
  objective = objectives.for_model(config.model)
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
  split = datasets.open_for_model(config, config.data.eval_split)
  model, weights, step, chosen, saved = checkpoint.restore_weights(
      workdir, config, config.eval.step, mesh, config.eval.weights)
  _check_holdout(saved, config, workdir)
  eval_step = make_eval_step(model, objective, mesh,
                             mesh_lib.state_sharding(mesh, weights["live"]))
  results, count = evaluate_weights(eval_step, weights, split, config, mesh)
  if jax.process_index() == 0:
    shown = "bits/dim" if objective.name == "bpd" else objective.label
    print(f"{config.data.eval_split} {shown} {results[chosen]:.6f} ({count} examples, "
          f"step {step}, {chosen} weights)", flush=True)
  # After the print, so that a workdir that cannot be written (a read-only
  # share of someone's checkpoints) still gives the number before its error.
  # Named after the split, so that the in-training record of the step stays.
  folder = output_dir.folder(config, workdir, "eval")
  source = data_source(config)
  try:
    stem = result_stem(folder, step, config.data.eval_split, source)
    path = write_result(folder, step, config.data.eval_split, objective.label, results,
                        count, chosen, source, stem)
  except OSError as e:
    raise UserError(f"cannot save the result in {folder}: {e.strerror or e}; it is "
                    f"printed above; {output_dir.HINT}") from e
  log.info("eval step %d split %s over %d examples: %s -> %s", step,
           config.data.eval_split, count, describe(results, chosen), path)
  if config.eval.per_example:
    _write_per_example(config, model, objective, mesh, weights[chosen], split, folder,
                       f"{stem}_{objective.label}.npy")
  return results[chosen]


def _check_holdout(saved, config, workdir: str) -> None:
  """Refuses a 'holdout' larger than the run's own: its extra images were
  trained on. Checked where both read the same npz folder."""
  d, s = config.data, saved.data
  same_images = (d.dataset == s.dataset == "npz" and s.train_split == "train"
                 and os.path.realpath(d.npz_dir) == os.path.realpath(s.npz_dir))
  if d.eval_split == "holdout" and same_images and d.holdout > s.holdout:
    trained = f"all but the last {s.holdout}" if s.holdout else "all"
    fix = (f"set data.holdout to {s.holdout} or less" if s.holdout
           else "score another split")
    raise UserError(f"workdir {workdir} trained on {trained} of its training images, "
                    f"so a holdout of {d.holdout} would score {d.holdout - s.holdout} "
                    f"images it trained on; {fix}")


def _write_per_example(config, model, objective, mesh, params, split, folder: str,
                       name: str) -> None:
  """eval.per_example: one more pass, with the chosen weights, kept per image."""
  values_step = make_values_step(model, objective, mesh,
                                 mesh_lib.state_sharding(mesh, params))
  values = per_example(values_step, params, split, config, mesh)
  if jax.process_index() != 0:
    return
  path = epath.Path(folder) / name
  try:
    with path.open("wb") as f:
      np.save(f, values)
  except OSError as e:
    raise UserError(f"cannot save the values of each example in {folder}: "
                    f"{e.strerror or e}; {output_dir.HINT}") from e
  log.info("%d values, one an example in split order -> %s", len(values), path)
  print(path, flush=True)
