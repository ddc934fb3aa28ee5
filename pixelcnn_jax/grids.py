"""`--mode=sample`: sample grids and bottom-half completions as PNGs."""

import logging
import os

import jax
import numpy as np

from pixelcnn_jax import checkpoint, conditioning, config_base, datasets, image_grid
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import output_dir, reconstruction, sampling
from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)


def parse_labels(text: str, num_classes: int) -> np.ndarray:
  try:
    labels = np.array([int(v) for v in text.split(",")], np.int32)
  except ValueError as e:
    raise UserError(f"sample.labels must be comma-separated integers, got "
                    f"{text!r}") from e
  try:
    conditioning.check_labels(labels, num_classes, "sample.labels")
  except ValueError as e:
    raise UserError(str(e)) from e
  return labels


def sample_inputs(config, eval_split):
  """(h, number of images, grid columns) for a sample grid."""
  m, num = config.model, config.sample.num
  if m.conditioning == "none":
    return None, num, int(np.ceil(np.sqrt(num)))
  if m.num_classes > 0:
    if config.sample.labels:
      labels = parse_labels(config.sample.labels, m.num_classes)
      return labels, len(labels), int(np.ceil(np.sqrt(len(labels))))
    per_class = max(1, num // m.num_classes)
    return (np.repeat(np.arange(m.num_classes, dtype=np.int32), per_class),
            per_class * m.num_classes, per_class)
  _, labels, vectors = eval_split.read(np.arange(min(num, len(eval_split))))
  vectors = condition_of(config, labels, vectors)
  return vectors, len(vectors), int(np.ceil(np.sqrt(len(vectors))))


def condition_of(config, labels, vectors):
  """The h of eval images: their labels or their vectors, as the model takes."""
  m = config.model
  if m.conditioning == "none":
    return None
  if m.num_classes > 0:
    return labels
  if vectors is None:
    raise UserError(f"a model with conditioning={m.conditioning!r} on vectors draws "
                    "from the vectors of the eval split: set data.vector_file")
  return vectors


def draw_grid(model, params, config, eval_split, mesh, step: int, folder: str,
              key, replace: bool = True):
  """The PNG in `folder` of a model at `step`: samples of a PixelCNN,
  reconstructions of an auto-encoder, none (None) of an embedding net.
  replace=False keeps an earlier PNG of that name (`image_grid.save_grid`)."""
  if config.model.kind == "embedding":
    return None
  if config.model.kind != "pixelcnn":
    return reconstruction.draw_grid(model, params, config, eval_split, mesh, step,
                                    folder, key, replace=replace)
  h, num, columns = sample_inputs(config, eval_split)
  images = sampling.sample(model, {"params": params}, key, num, h=h,
                           method=config.sample.method,
                           temperature=config.sample.temperature, mesh=mesh)
  return image_grid.save_grid(os.path.join(folder, f"sample_{step}.png"), images,
                              columns, replace=replace)


def draw_completions(model, params, config, eval_split, mesh, step: int,
                     folder: str, key, replace: bool = True) -> str:
  """Eval images with the bottom half hidden and re-sampled.

  Grid rows alternate: originals, then their completions.
  """
  num = min(config.sample.num, len(eval_split))
  images, labels, vectors = eval_split.read(np.arange(num))
  h = condition_of(config, labels, vectors)
  top = images[:, :images.shape[1] // 2]
  done = sampling.sample(model, {"params": params}, key, num, h=h,
                         method=config.sample.method,
                         temperature=config.sample.temperature, prefix=top, mesh=mesh)
  columns = min(num, 8)
  rows = []
  for start in range(0, num, columns):
    rows += [images[start:start + columns], done[start:start + columns]]
  pad = lambda r: np.concatenate([r, np.full((columns - len(r), *r.shape[1:]), 255,
                                             np.uint8)])
  grid = np.concatenate([pad(r) for r in rows])
  return image_grid.save_grid(os.path.join(folder, f"completion_{step}.png"), grid,
                              columns, replace=replace)


def run(config, workdir: str) -> str:
  """Loads config.eval.step with config.eval.weights and writes one PNG,
  beside any earlier one of that step rather than over it."""
  config_base.validate(config)
  if config.model.kind == "embedding":
    raise UserError(f"a model of kind {config.model.kind!r} draws no images")
  if config.sample.complete and config.model.kind != "pixelcnn":
    raise UserError("sample.complete needs a PixelCNN (model.kind='pixelcnn'); "
                    f"this is model.kind={config.model.kind!r}")
  folder, = output_dir.writable(config, workdir, "samples")
  mesh = mesh_lib.make_mesh(config.mesh)
  eval_split = datasets.open_for_model(config, config.data.eval_split)
  model, weights, step, chosen, _ = checkpoint.restore_weights(
      workdir, config, config.eval.step, mesh, config.eval.weights)
  draw = draw_completions if config.sample.complete else draw_grid
  path = draw(model, weights[chosen], config, eval_split, mesh, step, folder,
              jax.random.PRNGKey(config.sample.seed), replace=False)
  log.info("wrote %s", path)
  if jax.process_index() == 0:
    print(path, flush=True)
  return path
