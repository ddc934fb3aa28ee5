"""Face embeddings for the paper's section 3.3: a small conv net trained with
FaceNet's triplet loss (the paper's ref. 23).

The net maps a face to a unit vector; the triplet loss pulls images of one
person together and pushes other people at least `margin` further away
(squared distances). Each anchor is paired with every positive in the batch,
and each pair with a semi-hard negative, FaceNet's choice: the closest
negative that is still further away than the positive, or, when there is
none, the hardest (closest) negative.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from pixelcnn_jax.autoencoder import Encoder

MARGIN = 0.2


class EmbeddingNet(nn.Module):
  """apply(variables, x) -> unit vectors [B, code_dim]."""
  encoder: Encoder

  def __call__(self, x_BHWC: jax.Array, h=None, train: bool = False) -> jax.Array:
    del h, train  # Identities are the loss's business, not the net's.
    v = self.encoder(x_BHWC)
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def triplet_losses(emb_BD: jax.Array, labels_B: jax.Array,
                   margin: float = MARGIN) -> jax.Array:
  """Per anchor: the mean over its positives of max(0, d(a,p) - d(a,n) + margin),
  n semi-hard (the closest negative with d(a,n) > d(a,p), else the hardest);
  0 for an anchor with no positive in the batch."""
  d = jnp.sum((emb_BD[:, None] - emb_BD[None]) ** 2, axis=-1)  # [a, x]
  same = labels_B[:, None] == labels_B[None]
  positive = same & ~jnp.eye(len(labels_B), dtype=bool)
  d_ap = d[:, :, None]                                         # [a, p, 1]
  d_an = jnp.where(same, jnp.inf, d)[:, None, :]               # [a, 1, n]
  semi_hard = jnp.min(jnp.where(d_an > d_ap, d_an, jnp.inf), axis=-1)
  hardest = jnp.min(d_an, axis=-1)
  d_neg = jnp.where(jnp.isfinite(semi_hard), semi_hard, hardest)
  per_pair = jnp.where(positive & jnp.isfinite(d_neg),
                       jnp.maximum(d - d_neg + margin, 0.0), 0.0)
  pairs = jnp.sum(positive, axis=1)
  return jnp.sum(per_pair, axis=1) / jnp.maximum(pairs, 1)


def identification_accuracy(emb_ND: np.ndarray, labels_N: np.ndarray) -> float:
  """Leave-one-out nearest-mean identification: each image is assigned the
  person whose mean embedding (without the image itself) is nearest."""
  emb_ND, labels_N = np.asarray(emb_ND, np.float64), np.asarray(labels_N)
  people = np.unique(labels_N)
  sums = np.stack([emb_ND[labels_N == p].sum(0) for p in people])
  counts = np.array([(labels_N == p).sum() for p in people], np.float64)
  correct = 0
  for v, label in zip(emb_ND, labels_N):
    own = people == label
    means = sums.copy()
    means[own] -= v
    means /= np.maximum(counts - own, 1)[:, None]
    if counts[own][0] < 2:  # Nothing left to compare with.
      continue
    correct += people[np.argmin(((means - v) ** 2).sum(-1))] == label
  return correct / len(labels_N)


def embed(model, variables, images_NHWC, batch: int = 256) -> np.ndarray:
  """Unit embeddings of uint8 images, in batches."""
  apply = jax.jit(model.apply)
  images_NHWC = np.asarray(images_NHWC)
  return np.concatenate([np.asarray(apply(variables, images_NHWC[i:i + batch]))
                         for i in range(0, len(images_NHWC), batch)])
