"""What each kind of model is trained and evaluated on, per example.

- `pixelcnn` and `autoencoder` (section 3.4): bits/dim of the image, the
  latter given the code of its own encoder;
- `mse_autoencoder`: the paper's baseline, the mean squared error of the
  reconstruction on the normalised [-1, 1] scale (x 127.5^2 for 8-bit units);
- `embedding` (section 3.3): FaceNet's triplet loss, the identities coming in
  as h.

The train step averages `per_example` over the batch; eval sums it over a
split. `runaway` is the training loss past which a run has diverged.
"""

import dataclasses
from typing import Callable

import jax.numpy as jnp

from pixelcnn_jax import embedding
from pixelcnn_jax.model import normalize

KINDS = ("pixelcnn", "autoencoder", "mse_autoencoder", "embedding")


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str        # Metrics are train_<name> and eval_<name>.
  label: str       # How results and eval JSON keys call it.
  runaway: float
  # (model, variables, images, h, train, rngs) -> per-example values [B].
  per_example: Callable


def _bits_per_dim(model, variables, images, h, train, rngs):
  # The models' own, not likelihood's of their logits: on a GPU it never
  # writes the logits (head_loss).
  return model.apply(variables, images, h=h, train=train, rngs=rngs, method="bits_per_dim")


def _squared_error(model, variables, images, h, train, rngs):
  reconstruction = model.apply(variables, images, h=h, train=train, rngs=rngs)
  return jnp.mean((reconstruction - normalize(images)) ** 2, axis=(1, 2, 3))


def _triplet(model, variables, images, h, train, rngs):
  return embedding.triplet_losses(
      model.apply(variables, images, train=train, rngs=rngs), h)


# Runaway bounds: far above uniform logits (8 bits/dim), an error of the
# whole [-1, 1] range (4) and the triplet loss of any unit vectors (4 + margin).
LIKELIHOOD = Objective("bpd", "bits_per_dim", 64.0, _bits_per_dim)
OBJECTIVES = {
    "pixelcnn": LIKELIHOOD,
    "autoencoder": LIKELIHOOD,
    "mse_autoencoder": Objective("mse", "mse", 100.0, _squared_error),
    "embedding": Objective("triplet", "triplet_loss", 100.0, _triplet),
}


def for_model(model_cfg) -> Objective:
  return OBJECTIVES[model_cfg.kind]
