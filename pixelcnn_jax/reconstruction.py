"""The paper's Fig. 6: images, their MSE reconstructions, and PixelCNN samples
given their codes; `--mode=reconstruct` and the auto-encoders' training grids.

One row per image: the original | the MSE baseline's reconstruction (when a
baseline is given) | `sample.per_image` draws of the PixelCNN decoder
conditioned on the original's code. The samples share the code, not the
pixels: what they keep in common is what the code carries.
"""

import logging
import os

import jax
import numpy as np

from pixelcnn_jax import autoencoder, checkpoint, config_base, datasets, image_grid
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import output_dir, sampling
from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)


def reconstruct(model, params, images_NHWC) -> np.ndarray:
  """The MSE auto-encoder's reconstructions of uint8 images, as uint8."""
  out = jax.jit(model.apply)({"params": params}, images_NHWC)
  return np.asarray(autoencoder.to_uint8(out))


def decode_samples(model, params, images_NHWC, key, per_image: int, mesh=None,
                   temperature: float = 1.0) -> np.ndarray:
  """[N, per_image, H, W, C]: draws of the PixelCNN decoder given each image's code."""
  codes = np.asarray(autoencoder.encode(model, {"params": params}, images_NHWC))
  draws = sampling.sample(model.decoder, {"params": params["decoder"]}, key,
                          len(codes) * per_image, h=np.repeat(codes, per_image, 0),
                          temperature=temperature, mesh=mesh)
  return draws.reshape(len(codes), per_image, *draws.shape[1:])


def figure(images, reconstructions=None, samples=None) -> tuple[np.ndarray, int]:
  """(images row-major, columns): each row an original, its reconstruction
  and its samples, as far as given."""
  columns = [images[:, None]]
  if reconstructions is not None:
    columns.append(reconstructions[:, None])
  if samples is not None:
    columns.append(samples)
  rows = np.concatenate(columns, axis=1)
  return rows.reshape(-1, *rows.shape[2:]), rows.shape[1]


def draw_grid(model, params, config, eval_split, mesh, step: int, folder: str,
              key, baseline=None, replace: bool = True) -> str:
  """The grid in `folder` of either auto-encoder at `step`, from the first
  sample.num images of the eval split; `baseline` is (MSE model, params) or
  None; replace=False keeps an earlier grid of that name."""
  num = min(config.sample.num, len(eval_split))
  images, _, _ = eval_split.read(np.arange(num))
  if config.model.kind == "mse_autoencoder":
    grid, columns = figure(images, reconstruct(model, params, images))
  else:
    recon = reconstruct(*baseline, images) if baseline else None
    draws = decode_samples(model, params, images, key, config.sample.per_image, mesh,
                           config.sample.temperature)
    grid, columns = figure(images, recon, draws)
  return image_grid.save_grid(os.path.join(folder, f"reconstruct_{step}.png"), grid,
                              columns, replace=replace)


def run(config, workdir: str) -> str:
  """`--mode=reconstruct`: the Fig. 6 grid of an auto-encoder's workdir,
  with the baseline of sample.baseline_workdir when it is set."""
  config_base.validate(config)
  if config.model.kind != "autoencoder":
    raise UserError(f"--mode=reconstruct needs model.kind='autoencoder', got "
                    f"{config.model.kind!r}")
  folder, = output_dir.writable(config, workdir, "samples")
  mesh = mesh_lib.make_mesh(config.mesh)
  eval_split = datasets.open_for_model(config, config.data.eval_split)
  model, weights, step, chosen, _ = checkpoint.restore_weights(
      workdir, config, config.eval.step, None, config.eval.weights)
  baseline = None
  if config.sample.baseline_workdir:
    base_model, base_weights, _, base_chosen, base_config = checkpoint.restore_weights(
        config.sample.baseline_workdir, None, "best")
    if (base_config.model.kind != "mse_autoencoder"
        or tuple(base_config.data.image_size) != tuple(config.data.image_size)):
      raise UserError(f"sample.baseline_workdir={config.sample.baseline_workdir} holds "
                      f"a model of kind {base_config.model.kind!r} for "
                      f"{tuple(base_config.data.image_size)} images, not an "
                      f"mse_autoencoder for {tuple(config.data.image_size)}")
    baseline = (base_model, base_weights[base_chosen])
  path = draw_grid(model, weights[chosen], config, eval_split, mesh, step, folder,
                   jax.random.PRNGKey(config.sample.seed), baseline, replace=False)
  log.info("step %d (%s weights): originals | %s%d samples each -> %s", step, chosen,
           "MSE reconstructions | " if baseline else "", config.sample.per_image, path)
  if jax.process_index() == 0:
    print(path, flush=True)
  return path
