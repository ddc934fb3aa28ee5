"""The paper's section 3.3: portraits of a person from one photo's embedding,
interpolation between people, and the CLI modes behind them.

- `--mode=embed` (on the embedding net's workdir) writes `vec_<split>.npy`
  beside the npz files of its train and eval splits, which the portrait
  PixelCNN reads through `data.vector_file`, and prints the nearest-mean
  identification accuracy on the eval split (for section 3.3, run it with
  the held-out people's split: people the net never saw).
- `--mode=portraits` (on the portrait PixelCNN's workdir, with
  `sample.embedding_workdir`): for each person of the eval split (or of
  `sample.people`), one photo | `sample.per_image` new portraits drawn from its
  embedding at `sample.temperature` (Fig. 4); then each portrait is embedded
  and matched to the nearest person's mean embedding: the top-1 rate says
  whether identity was kept (chance: one over the number of people).
- `--mode=interpolate`: rows between the embeddings of two photos of
  different people, `sample.per_image` equal steps, every image drawn with
  the same noise (Fig. 5).
"""

import json
import logging
import os

import jax
import numpy as np
from etils import epath

from pixelcnn_jax import checkpoint, config_base, datasets, embedding, image_grid
from pixelcnn_jax import output_dir, sampling
from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)


def draw_portraits(model, variables, h_ND, key, per_photo: int,
                   temperature: float = 1.0) -> np.ndarray:
  """[N, per_photo, H, W, C]: new images for each embedding."""
  draws = sampling.sample(model, variables, key, len(h_ND) * per_photo,
                          h=np.repeat(np.asarray(h_ND, np.float32), per_photo, 0),
                          temperature=temperature)
  return draws.reshape(len(h_ND), per_photo, *draws.shape[1:])


def interpolate(model, variables, h_a, h_b, steps: int, key,
                temperature: float = 1.0) -> np.ndarray:
  """[steps, H, W, C]: images at (1 - t) h_a + t h_b, t = 0 ... 1, all drawn
  with the same noise, so that the row changes only with h. Its ends are
  what a one-image draw from h_a or h_b with the same key gives."""
  t = np.linspace(0.0, 1.0, steps)[:, None]
  h = (1.0 - t) * np.asarray(h_a, np.float32) + t * np.asarray(h_b, np.float32)
  return sampling.sample(model, variables, key, steps, h=h.astype(np.float32),
                         shared_noise=True, temperature=temperature)


def identity_rate(embedder, embed_vars, portraits_NHWC, people_N, images_MHWC,
                  labels_M) -> float:
  """How often a portrait's embedding is nearest to the mean embedding of
  the person it was drawn for, among the people of `labels_M`."""
  people = np.unique(labels_M)
  reference = embedding.embed(embedder, embed_vars, images_MHWC)
  means = np.stack([reference[labels_M == p].mean(0) for p in people])
  drawn = embedding.embed(embedder, embed_vars, portraits_NHWC)
  nearest = people[np.argmin(((drawn[:, None] - means[None]) ** 2).sum(-1), axis=1)]
  return float(np.mean(nearest == np.asarray(people_N)))


def _load_embedder(config):
  if not config.sample.embedding_workdir:
    raise UserError("this mode embeds photos: set sample.embedding_workdir to the "
                    "embedding net's workdir")
  embedder, embed_vars, embed_config = checkpoint.load(config.sample.embedding_workdir)
  if embed_config.model.kind != "embedding":
    raise UserError(f"sample.embedding_workdir={config.sample.embedding_workdir} holds a "
                    f"model of kind {embed_config.model.kind!r}, not an embedding net")
  if embed_config.model.code_dim != config.model.cond_dim:
    raise UserError(f"the embedding net gives {embed_config.model.code_dim}-dimensional "
                    f"vectors but this model takes model.cond_dim={config.model.cond_dim}")
  if tuple(embed_config.data.image_size) != tuple(config.data.image_size):
    raise UserError(f"the embedding net reads {tuple(embed_config.data.image_size)} "
                    f"images, this model {tuple(config.data.image_size)}")
  return embedder, embed_vars


def _people(config, labels) -> np.ndarray:
  """Persons of the eval split, or sample.people; one photo each (the first)."""
  present = np.unique(labels)
  if not config.sample.people:
    return present
  try:
    chosen = np.array([int(p) for p in config.sample.people.split(",")])
  except ValueError as e:
    raise UserError(f"sample.people must be comma-separated person ids, got "
                    f"{config.sample.people!r}") from e
  missing = [int(p) for p in chosen if p not in present]
  if missing:
    raise UserError(f"sample.people: person {missing[0]} is not in split "
                    f"{config.data.eval_split!r}, which holds {present.tolist()}")
  return chosen


def _setup(config, workdir, *outputs):
  """The models, the eval split and the folders of `outputs`, which are
  tried first."""
  config_base.validate(config)
  if config.model.kind != "pixelcnn" or config.model.conditioning != "vector":
    raise UserError("portraits need a PixelCNN conditioned on vectors "
                    "(model.kind='pixelcnn', model.conditioning='vector')")
  output_dir.writable(config, workdir, *outputs)
  embedder, embed_vars = _load_embedder(config)
  model, weights, step, chosen, _ = checkpoint.restore_weights(
      workdir, config, config.eval.step, None, config.eval.weights)
  split = datasets.open_for_model(config, config.data.eval_split)
  images, labels, _ = split.read(np.arange(len(split)))
  return model, {"params": weights[chosen]}, step, embedder, embed_vars, images, labels


def run_portraits(config, workdir: str) -> dict:
  """`--mode=portraits`: the Fig. 4 grid and the identity rate."""
  model, variables, step, embedder, embed_vars, images, labels = _setup(
      config, workdir, "samples", "eval")
  people = _people(config, labels)
  photos = np.stack([images[np.flatnonzero(labels == p)[0]] for p in people])
  h = embedding.embed(embedder, embed_vars, photos)
  drawn = draw_portraits(model, variables, h, jax.random.PRNGKey(config.sample.seed),
                         config.sample.per_image, config.sample.temperature)
  rate = identity_rate(embedder, embed_vars, drawn.reshape(-1, *drawn.shape[2:]),
                       np.repeat(people, drawn.shape[1]), images, labels)
  rows = np.concatenate([photos[:, None], drawn], axis=1)
  path = image_grid.save_grid(
      os.path.join(output_dir.folder(config, workdir, "samples"), f"portraits_{step}.png"),
      rows.reshape(-1, *rows.shape[2:]), rows.shape[1], replace=False)
  result = {"step": step, "split": config.data.eval_split, "people": people.tolist(),
            "portraits_per_person": int(drawn.shape[1]),
            "temperature": config.sample.temperature, "identity_top1": rate,
            "chance": 1.0 / len(np.unique(labels)), "grid": path}
  if jax.process_index() == 0:
    # Named after its grid, so that a second run's pair sits beside the first.
    stem = os.path.splitext(os.path.basename(path))[0]
    out = epath.Path(output_dir.unused(
        os.path.join(output_dir.folder(config, workdir, "eval"), f"{stem}.json")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"identity kept: {rate:.4f} top-1 over {drawn.shape[0] * drawn.shape[1]} "
          f"portraits of {len(people)} people at temperature "
          f"{config.sample.temperature:g} (chance {result['chance']:.4f}) -> {path}",
          flush=True)
  return result


def run_interpolate(config, workdir: str, rows: int = 5) -> str:
  """`--mode=interpolate`: the Fig. 5 grid, person k's first photo to person
  k+1's, for the first `rows` people of the eval split (or sample.people)."""
  model, variables, step, embedder, embed_vars, images, labels = _setup(
      config, workdir, "samples")
  people = _people(config, labels)
  if len(people) < 2:
    raise UserError("interpolation needs photos of two people at least")
  if config.sample.per_image < 2:
    raise UserError(f"an interpolation row needs its two ends: set sample.per_image "
                    f">= 2, got {config.sample.per_image}")
  photos = np.stack([images[np.flatnonzero(labels == p)[0]] for p in people])
  h = embedding.embed(embedder, embed_vars, photos)
  key = jax.random.PRNGKey(config.sample.seed)
  grid = np.concatenate([
      interpolate(model, variables, h[k], h[(k + 1) % len(people)],
                  config.sample.per_image, key, config.sample.temperature)
      for k in range(min(rows, len(people)))])
  path = image_grid.save_grid(os.path.join(output_dir.folder(config, workdir, "samples"),
                                           f"interpolation_{step}.png"),
                              grid, config.sample.per_image, replace=False)
  log.info("step %d: interpolations between %s -> %s", step, people[:rows + 1].tolist(),
           path)
  if jax.process_index() == 0:
    print(path, flush=True)
  return path


def run_embed(config, workdir: str) -> dict:
  """`--mode=embed`: vectors for the portrait PixelCNN, and the accuracy."""
  config_base.validate(config)
  if config.model.kind != "embedding":
    raise UserError(f"--mode=embed needs an embedding net (model.kind='embedding'), "
                    f"got {config.model.kind!r}")
  if config.data.dataset != "npz" or datasets.is_shipped(config.data.npz_dir):
    raise UserError("--mode=embed writes vec_<split>.npy beside the npz files: set "
                    "data.dataset='npz' and data.npz_dir to a folder of yours, not "
                    "the data shipped with the package")
  output_dir.check([config.data.npz_dir], "vec_<split>.npy goes beside the npz files: "
                   "copy them to a folder you may write and set data.npz_dir")
  model, weights, step, chosen, _ = checkpoint.restore_weights(
      workdir, config, config.eval.step, None, config.eval.weights)
  folder = config.data.npz_dir
  accuracy, vectors = {}, {}
  for split in (config.data.train_split, config.data.eval_split):
    source = datasets.open_for_model(config, split)
    images, labels, _ = source.read(np.arange(len(source)))
    vectors[split] = embedding.embed(model, {"params": weights[chosen]},
                                     images).astype(np.float32)
    accuracy[split] = embedding.identification_accuracy(vectors[split], labels)
  paths = {split: os.path.join(folder, f"vec_{split}.npy") for split in vectors}
  if jax.process_index() == 0:
    for split, path in paths.items():
      _check_replaceable(path, vectors[split])
    for split, path in paths.items():
      np.save(path, vectors[split])
      log.info("step %d (%s weights): %d vectors -> %s; nearest-mean identification "
               "%.1f%%", step, chosen, len(vectors[split]), path, 100 * accuracy[split])
    print(f"{config.data.eval_split} identification accuracy "
          f"{accuracy[config.data.eval_split]:.4f} (leave-one-out, nearest mean; "
          f"train {accuracy[config.data.train_split]:.4f})", flush=True)
  return accuracy


def _check_replaceable(path: str, vectors) -> None:
  """Refuses to write over other vectors: a portrait PixelCNN trained on them
  would be scored against this net's without a word."""
  if not os.path.exists(path):
    return
  try:
    old = np.load(path, allow_pickle=False)
  except (OSError, ValueError):
    old = None
  if old is None or old.shape != vectors.shape or not np.allclose(old, vectors, atol=1e-4):
    raise UserError(f"{path} holds other vectors (of another embedding net or step, "
                    "which a portrait PixelCNN may be trained on); move it away, or "
                    "set data.npz_dir to a copy of the npz files")
