"""Gated (Conditional) PixelCNN, van den Oord et al. 2016, Fig. 2 and eq. 4-5.

Receptive field of an output at pixel (i, j) with L layers, kernel n = 2m + 1,
k = m + 1 = ceil(n / 2):
- vertical stack: rows i-k-(L-1)(k-1) .. i-1, columns j-Lm .. j+Lm: a full
  rectangle above the pixel, so there is no blind spot;
- horizontal stack: row i, columns j-Lm .. j, where the centre column only
  carries colours that come earlier in R -> G -> B order.

The module exposes its stages (`embed_condition`, `vertical`, `horizontal`,
`head`) so that the cached sampler runs the very same parameters and
arithmetic on windows instead of whole images.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from pixelcnn_jax import conditioning as cond_lib
from pixelcnn_jax import head_loss
from pixelcnn_jax import layers, likelihood
from pixelcnn_jax.likelihood import NUM_LEVELS


class GatedLayer(nn.Module):
  """One gated layer of both stacks."""
  features: int
  kernel_size: int
  channels: int
  first: bool
  skip: bool
  conditional: bool
  dropout: float
  dtype: Any
  precision: Any
  channel_align: int = 1
  cond_zero_init: bool = False

  def setup(self):
    p, c, (_, k) = self.features, self.channels, extents(self.kernel_size)
    kw = dict(dtype=self.dtype, precision=self.precision,
              channel_align=self.channel_align)
    in_colours = (np.arange(c) if self.first else layers.channel_colours(p, c))
    inputs = c if self.first else p
    self.v_conv = layers.ShiftedConv(2 * p, (k, self.kernel_size), in_features=inputs, **kw)
    self.h_conv = layers.ShiftedConv(
        2 * p, (1, k), centre_mask=layers.colour_mask(
            in_colours, layers.gated_colours(p, c), include_same=not self.first),
        in_features=inputs, **kw)
    self.v_to_h = layers.MaskedDense(2 * p, in_features=2 * p, **kw)
    grouped = layers.colour_mask(layers.channel_colours(p, c),
                                 layers.channel_colours(p, c), include_same=True)
    self.h_out = layers.MaskedDense(p, mask=grouped, in_features=p, **kw)
    if self.skip:
      self.skip_out = layers.MaskedDense(p, mask=grouped, in_features=p, **kw)
    if self.conditional:
      init = (nn.initializers.zeros if self.cond_zero_init
              else nn.initializers.lecun_normal())
      self.v_cond = layers.MaskedDense(2 * p, use_bias=False, kernel_init=init, **kw)
      self.h_cond = layers.MaskedDense(2 * p, use_bias=False, kernel_init=init, **kw)
    self.drop = nn.Dropout(self.dropout)

  def condition(self, cond: Optional[jax.Array], aligned: bool = False):
    """V^T h (or V * s) for both stacks; 0 when unconditional."""
    if cond is None:
      return 0.0, 0.0
    return self.v_cond(cond, aligned), self.h_cond(cond, aligned)

  def vertical(self, v: jax.Array, padding, cond, aligned: bool = False):
    """(vertical output, link): link = 1x1(vertical pre-activation) + V_h h is
    everything the horizontal stack gets from outside its own row, but the
    1x1's bias, which `horizontal` adds with its convolution's
    (horizontal_bias). `aligned`: the link, and the pre-activation it is made
    from, stay at the aligned width (layers.ShiftedConv)."""
    cond_v, cond_h = self.condition(cond, aligned)
    # Aligned, the bias is folded into the kernel where the input's padding
    # has room for a ones channel (layers.fold_bias), so that its gradient
    # comes out of the kernel's instead of a reduction of its own.
    pre = self.v_conv(v, padding, aligned, fold=True) + cond_v
    return (layers.gate(pre, self.features),
            self.v_to_h(pre, aligned, with_bias=False) + cond_h)

  def gate(self, pre: jax.Array, aligned: bool, deterministic: bool = True) -> jax.Array:
    """The gate's output, after dropout unless `deterministic`; aligned, at
    the aligned width, with the ones channel that the next kernel folds its
    bias from (layers.add_ones)."""
    if not aligned:
      return self.drop(layers.gate(pre, self.features), deterministic=deterministic)
    width = layers.aligned_width(self.features, self.channel_align)
    y = layers.gate(pre, self.features, width)
    if not deterministic and self.dropout > 0:
      # The mask is drawn at the true width, so that the alignment changes
      # no mask, and padded: dropout must not scale the ones channel.
      scale = self.drop(jnp.ones((*y.shape[:-1], self.features), jnp.float32),
                        deterministic=False)
      y = (y * layers.pad_to(scale, -1, width)).astype(y.dtype)
    return layers.add_ones(y, self.features)

  def horizontal(self, h: jax.Array, link: jax.Array, padding, train: bool = False,
                 aligned: bool = False):
    """(output, skip); `aligned`: h, the output and the skip at the aligned width."""
    # Dropout only on the residual branch, as PixelCNN++ does: the vertical
    # stack has no residual path, and dropping its maps would compound over
    # every layer. The first layer has none either: its output starts the
    # stream, and dropout there made eval mode fail (experiments/RESULTS.md).
    # Dropout is elementwise, so colour groups stay causal.
    # The first layer's output starts the residual stream's ones channel,
    # which every later h_conv folds its bias from.
    # The link's bias rides on the convolution's: cuDNN adds both in its
    # epilogue, where a bias of the link's own costs a pass over it.
    pre = self.h_conv(h, padding, aligned, fold=True,
                      extra_bias=self.v_to_h.variables["params"]["bias"]) + link
    gated = self.gate(pre, aligned, deterministic=not train or self.first)
    out = self.h_out(gated, aligned, fold=True, ones_out=self.first)
    if not self.first:
      # Residual: the input at each output's own column, which is the last
      # column of the window when the sampler passes one.
      out = out + h[:, :, h.shape[2] - out.shape[2]:]
    return out, (self.skip_out(gated, aligned, fold=True) if self.skip else None)


class GatedPixelCNN(nn.Module):
  """Gated PixelCNN over uint8 images [B, H, W, C], C in {1, 3}.

  `apply(variables, x, h=None)` returns float32 logits [B, H, W, C, 256].
  x may be integer or float with values in 0..255 (float lets gradients flow
  to the input). h is required exactly when `conditioning != "none"`.
  `train=True` turns on dropout (when `dropout > 0`) and needs
  `rngs={"dropout": key}`; eval and both samplers run without it.
  `image_size` is the (H, W) that samplers draw; the convolutions themselves
  accept any size. `cond_noise` > 0 adds N(0, cond_noise^2) noise to a real
  vector h (not to labels) when `train=True`, from the "dropout" rng, so that
  a model trained on few images cannot recall each one from its own h.
  `channel_align` > 1 pads every convolution's and 1x1's channels to its
  multiples while computing (zeros: the same sums, the same parameters);
  GPU kernels want 8 or more. Whole images then keep that width between
  kernels, with the biases folded into the kernels (layers.fold_bias).
  `cond_zero_init` starts the maps from h into the gates at zero, so that the
  model starts as the unconditional one and h enters as far as it helps (for
  an h from an encoder trained with the model, whose early codes are noise).
  """
  num_layers: int = 15
  features: int = 128
  kernel_size: int = 3
  channels: int = 3
  skip: bool = False
  head_features: int = 0
  conditioning: str = "none"
  num_classes: int = 0
  cond_dim: int = 0
  spatial_features: int = 32
  dropout: float = 0.0
  image_size: tuple[int, int] = (32, 32)
  dtype: Any = jnp.float32
  precision: Any = None
  channel_align: int = 1
  cond_noise: float = 0.0
  cond_zero_init: bool = False

  def setup(self):
    validate_architecture(self.num_layers, self.features, self.kernel_size,
                          self.channels, self.head_features, self.dropout)
    cond_lib.validate(self.conditioning, self.num_classes, self.cond_dim)
    cond_lib.validate_noise(self.cond_noise, self.conditioning, self.num_classes)
    self.layers = [
        GatedLayer(self.features, self.kernel_size, self.channels, first=(i == 0),
                   skip=self.skip, conditional=self.conditioning != "none",
                   dropout=self.dropout, dtype=self.dtype, precision=self.precision,
                   channel_align=self.channel_align, cond_zero_init=self.cond_zero_init)
        for i in range(self.num_layers)
    ]
    c = self.channels
    head = self.head_features or self.features
    self.head_hidden = layers.MaskedDense(
        head, mask=layers.colour_mask(layers.channel_colours(self.features, c),
                                      layers.channel_colours(head, c), True),
        dtype=self.dtype, precision=self.precision, channel_align=self.channel_align,
        in_features=self.features)
    # Logits stay in float32: bf16 logits would cost ~0.01 bits/dim of rounding.
    # Their matmul's operands are in the compute dtype, as every other layer's.
    self.head_out = layers.MaskedDense(
        c * NUM_LEVELS, mask=layers.colour_mask(
            layers.channel_colours(head, c), np.repeat(np.arange(c), NUM_LEVELS), True),
        dtype=self.dtype, float32_out=True, precision=self.precision,
        channel_align=self.channel_align, in_features=head)
    if self.conditioning == "spatial":
      self.spatial_net = cond_lib.SpatialConditioner(self.spatial_features,
                                                     dtype=self.dtype)

  @property
  def extents(self) -> tuple[int, int]:
    return extents(self.kernel_size)

  def __call__(self, x_BHWC: jax.Array, h: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    return self.head(self.trunk(x_BHWC, h, train), aligned=True)

  def bits_per_dim(self, x_BHWC: jax.Array, h: Optional[jax.Array] = None,
                   train: bool = False) -> jax.Array:
    """Bits/dim of each image, float32 [B], for integer images x: what
    likelihood.bits_per_dim gives of __call__'s logits, but on a GPU the
    head's last 1x1 and the softmax run as a kernel that never writes the
    logits (head_loss)."""
    likelihood.check_images(x_BHWC)
    y = self._head_input(self.trunk(x_BHWC, h, train), aligned=True)
    if self.is_initializing():
      self.head_out(y)  # Creates its parameters, which `operands` reads.
    x, kernel, bias = self.head_out.operands(y)
    return head_loss.image_bits(x, kernel, bias, x_BHWC, self.head_features or self.features,
                                self.precision)

  def trunk(self, x_BHWC: jax.Array, h: Optional[jax.Array], train: bool) -> jax.Array:
    """Both stacks over whole images: the head's input, at the aligned width."""
    if x_BHWC.ndim != 4 or x_BHWC.shape[-1] != self.channels:
      raise ValueError(f"expected images [B, H, W, {self.channels}], got shape "
                       f"{tuple(x_BHWC.shape)}")
    B, H, W, _ = x_BHWC.shape
    x = normalize(x_BHWC)
    cond = self.embed_condition(h, B, H, W, train)
    m, k = self.extents
    # The vertical stack's input moves down one row (pad, then crop the last)
    # so that it never sees row i. A slice crops rather than negative conv
    # padding, for which XLA on GPU falls back to an unfused gradient conv.
    v = jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :H]
    hs, skips = x, []
    v_pad = ((k - 1, 0), (m, m))
    # Whole images keep every tensor between kernels at the aligned width,
    # so that neither they nor their gradients are padded or cropped in
    # passes of their own (experiments/RESULTS.md).
    for i in range(self.num_layers):
      v, link = self.vertical(i, v, v_pad, cond, aligned=True)
      hs, skip = self.horizontal(i, hs, link, ((0, 0), (m, 0)), train, aligned=True)
      skips.append(skip)
    return sum(skips) if self.skip else hs

  def embed_condition(self, h, batch: int, height: int, width: int, train: bool = False):
    """None, a global vector [B, 1, 1, D], or a spatial map s = m(h) [B, H, W, k]."""
    vec = cond_lib.embed(h, self.conditioning, self.num_classes, self.cond_dim, batch)
    if train and self.cond_noise > 0:
      vec = vec + self.cond_noise * jax.random.normal(self.make_rng("dropout"), vec.shape)
    if vec is None or self.conditioning != "spatial":
      return vec
    return self.spatial_net(vec[:, 0, 0], height, width)

  def vertical(self, i: int, v, padding, cond, aligned: bool = False):
    return self.layers[i].vertical(v, padding, cond, aligned)

  def horizontal(self, i: int, h, link, padding, train: bool = False,
                 aligned: bool = False):
    return self.layers[i].horizontal(h, link, padding, train, aligned)

  def head(self, features: jax.Array, aligned: bool = False) -> jax.Array:
    logits = self.head_out(self._head_input(features, aligned))
    return logits.reshape(*logits.shape[:-1], self.channels, NUM_LEVELS)

  def _head_input(self, features: jax.Array, aligned: bool) -> jax.Array:
    """The input of the head's last 1x1, which `head` and `bits_per_dim` share."""
    return nn.relu(self.head_hidden(nn.relu(features), aligned))


def require_pixelcnn(model, what: str) -> None:
  """Raises ValueError in one line unless `model` is a GatedPixelCNN; an
  auto-encoder (pj.load(..., whole=True)) is pointed to its decoder."""
  if not isinstance(model, GatedPixelCNN):
    raise ValueError(f"{what} takes a GatedPixelCNN, got {type(model).__name__}; for an "
                     "auto-encoder, pass its decoder (pj.load of its workdir) with "
                     "h=pj.autoencoder.encode(...)")


def horizontal_bias(layer_params) -> jax.Array:
  """The bias of a layer's horizontal pre-activation, float32 [2p]: its
  convolution's and its link's 1x1's (GatedLayer.horizontal)."""
  return layer_params["h_conv"]["bias"] + layer_params["v_to_h"]["bias"]


def extents(kernel_size: int) -> tuple[int, int]:
  """(m, k) of an n = 2m + 1 kernel: the columns either side of the centre,
  and k = m + 1 = ceil(n / 2), the rows of the vertical stack's (k x n)
  kernel and the columns of the horizontal stack's (1 x k) one."""
  return kernel_size // 2, kernel_size // 2 + 1


def normalize(x_BHWC: jax.Array) -> jax.Array:
  return x_BHWC.astype(jnp.float32) * (2.0 / (NUM_LEVELS - 1)) - 1.0


def validate_architecture(num_layers: int, features: int, kernel_size: int,
                          channels: int, head_features: int = 0,
                          dropout: float = 0.0) -> None:
  """Raises ValueError with a one-line reason for a model that cannot be built."""
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}")
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  if kernel_size < 3 or kernel_size % 2 == 0:
    raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
  for name, value in (("features", features), ("head_features", head_features)):
    if value < 0 or (name == "features" and value == 0):
      raise ValueError(f"{name} must be positive, got {value}")
    if value % channels:
      raise ValueError(f"{name}={value} must be divisible by channels={channels} "
                       "so that each colour gets an equal group of feature maps")


def receptive_field(num_layers: int, kernel_size: int) -> tuple[int, int]:
  """(rows above, columns either side) that the output at a pixel can see."""
  m, k = extents(kernel_size)
  return k + (num_layers - 1) * (k - 1), num_layers * m
