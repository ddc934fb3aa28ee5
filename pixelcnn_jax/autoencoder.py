"""The paper's section 3.4: an auto-encoder whose decoder is a PixelCNN.

An encoder maps an image to an m-dimensional code h; a conditional Gated
PixelCNN models p(x | h), through eq. 4 (`conditioning="vector"`) or eq. 5
(`"spatial"`, s = m(h)); both are trained end to end on the decoder's NLL.
The baseline (`MSEAutoEncoder`) has the same encoder and a deconvolutional
decoder trained on the mean squared error, as in the paper.

Parameters are one tree, {"encoder": ..., "decoder": ...}, checkpointed like
any model. `pj.load` of an auto-encoder's workdir returns its decoder, which
`pj.sample(decoder, variables, key, n, h=codes)` samples from; `encode`
gives the codes of images.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from pixelcnn_jax.model import GatedPixelCNN, normalize


class Encoder(nn.Module):
  """Strided convolutions down to 4x4 (or below), then a dense map to the code."""
  code_dim: int
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    y = normalize(x_BHWC).astype(self.dtype)
    width = self.features
    while y.shape[1] > 4 or y.shape[2] > 4:
      y = nn.relu(nn.Conv(width, (4, 4), (2, 2), dtype=self.dtype)(y))
      width = min(2 * width, 8 * self.features)
    y = y.reshape(y.shape[0], -1)
    return nn.Dense(self.code_dim, dtype=jnp.float32)(y.astype(jnp.float32))


class DeconvDecoder(nn.Module):
  """The baseline's decoder: dense to a 4x4 grid, then transposed
  convolutions up to the image, in the normalised [-1, 1] range."""
  image_size: tuple[int, int]
  channels: int
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, code_BD: jax.Array) -> jax.Array:
    height, width = self.image_size
    ups = max((max(height, width) - 1).bit_length() - 2, 0)  # 4 * 2**ups >= size
    wide = self.features * 2 ** min(ups, 3)
    y = nn.Dense(4 * 4 * wide, dtype=self.dtype)(code_BD)
    y = nn.relu(y.reshape(-1, 4, 4, wide))
    for _ in range(ups):
      wide = max(wide // 2, self.features)
      y = nn.relu(nn.ConvTranspose(wide, (4, 4), (2, 2), dtype=self.dtype)(y))
    y = nn.Conv(self.channels, (3, 3), dtype=jnp.float32)(y.astype(jnp.float32))
    return y[:, :height, :width]


class PixelCNNAutoEncoder(nn.Module):
  """apply(variables, x) -> the decoder's logits for x given its own code."""
  encoder: Encoder
  decoder: GatedPixelCNN

  @property
  def image_size(self):
    return self.decoder.image_size

  def __call__(self, x_BHWC: jax.Array, h: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    if h is not None:
      raise ValueError("an auto-encoder takes no h: its code comes from x")
    return self.decoder(x_BHWC, h=self.encoder(x_BHWC), train=train)

  def bits_per_dim(self, x_BHWC: jax.Array, h: Optional[jax.Array] = None,
                   train: bool = False) -> jax.Array:
    """The decoder's bits/dim of x given its own code (GatedPixelCNN.bits_per_dim)."""
    if h is not None:
      raise ValueError("an auto-encoder takes no h: its code comes from x")
    return self.decoder.bits_per_dim(x_BHWC, h=self.encoder(x_BHWC), train=train)

  def encode(self, x_BHWC: jax.Array) -> jax.Array:
    return self.encoder(x_BHWC)


class MSEAutoEncoder(nn.Module):
  """apply(variables, x) -> the reconstruction of x, normalised to [-1, 1]."""
  encoder: Encoder
  decoder: DeconvDecoder

  def __call__(self, x_BHWC: jax.Array, h: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    if h is not None:
      raise ValueError("an auto-encoder takes no h: its code comes from x")
    return self.decoder(self.encoder(x_BHWC))

  def encode(self, x_BHWC: jax.Array) -> jax.Array:
    return self.encoder(x_BHWC)


def encode(model, variables, images_BHWC) -> jax.Array:
  """The codes [B, m] of uint8 images, from either auto-encoder's variables."""
  return jax.jit(lambda v, x: model.apply(v, x, method="encode"))(
      variables, jnp.asarray(images_BHWC))


def to_uint8(reconstruction_BHWC) -> jax.Array:
  """A normalised reconstruction as 8-bit pixels."""
  pixels = (reconstruction_BHWC + 1.0) * (255.0 / 2.0)
  return jnp.clip(jnp.round(pixels), 0, 255).astype(jnp.uint8)
