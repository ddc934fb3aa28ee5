"""Model, optimizer, learning-rate schedule, EMA and train state, from a config.

Optimizer choice (the paper gives none): AdamW after clipping the global
gradient norm, with a linear warmup and a cosine decay to 1% of the peak.
Adam is what PixelCNN++ and PixelSNAIL used for these likelihoods; the warmup
keeps the deep gated stacks from diverging in the first steps at large
learning rates; the cosine end lets a fixed budget finish on a small rate;
clipping absorbs the rare huge gradients of 256-way softmaxes early on; and
decoupled weight decay (on kernels only) is the regulariser that small
datasets such as CIFAR-10 need beside dropout. `train.optimizer="muon"`
(optax.contrib.muon, on the layers' kernels stacked by shape) orthogonalises
the updates of the gated stacks' matrices instead. It reached lower bits/dim
than AdamW on CIFAR-10 in a fixed time budget, and on the main job at the same
steps (experiments/RESULTS.md), though each step costs more.
"""

import math
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pixelcnn_jax import autoencoder, embedding, shape_groups
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax.model import GatedPixelCNN

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
WEIGHTS = ("live", "ema")
OPTIMIZERS = ("adamw", "muon")
# The gated stacks' matrices, which Muon orthogonalises. Adam keeps what is not
# a hidden-to-hidden map: biases, the head that makes the logits, the
# conditioning maps and layer 0's convolutions of the image itself.
MUON_MODULES = ("v_conv", "h_conv", "v_to_h", "h_out", "skip_out")
MUON_RMS = 0.2  # Muon's updates scaled to AdamW's usual RMS, so both share one rate.
# The precision of Muon's Newton-Schulz products: "bfloat16" multiplies in bf16
# and sums in float32, as the reference Muon does.
MUON_PRODUCTS = {"float32": None, "bfloat16": "BF16_BF16_F32"}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Optional[Any]
  # The step at which the learning rate reaches its end value. A state field,
  # not a constant of the jitted step, so that a time budget can fix it once
  # the run has measured its speed, and a resumed run keeps it.
  horizon: jax.Array
  # The first step whose loss or gradient norm was non-finite or ran away;
  # 0 while training is healthy. Read on the host only where it syncs anyway.
  diverged_at: jax.Array

  def weights(self, which: str):
    """The live params, or their EMA ("ema", when kept)."""
    return self.ema_params if which == "ema" and self.ema_params is not None \
        else self.params


def make_model(model_cfg, image_size, precision=None):
  """The network of `model.kind`: a GatedPixelCNN, an auto-encoder with a
  PixelCNN decoder or its MSE baseline, or an embedding net."""
  if model_cfg.dtype not in DTYPES:
    raise ValueError(f"model.dtype must be one of {list(DTYPES)}, got "
                     f"{model_cfg.dtype!r}")
  dtype = DTYPES[model_cfg.dtype]
  encoder = autoencoder.Encoder(model_cfg.code_dim, model_cfg.encoder_features, dtype)
  if model_cfg.kind == "embedding":
    return embedding.EmbeddingNet(encoder)
  if model_cfg.kind == "mse_autoencoder":
    return autoencoder.MSEAutoEncoder(encoder, autoencoder.DeconvDecoder(
        tuple(image_size), model_cfg.channels, model_cfg.encoder_features, dtype))
  coded = model_cfg.kind == "autoencoder"
  pixelcnn = GatedPixelCNN(
      num_layers=model_cfg.num_layers, features=model_cfg.features,
      kernel_size=model_cfg.kernel_size, channels=model_cfg.channels,
      skip=model_cfg.skip, head_features=model_cfg.head_features,
      conditioning=model_cfg.conditioning, num_classes=model_cfg.num_classes,
      cond_dim=model_cfg.code_dim if coded else model_cfg.cond_dim,
      spatial_features=model_cfg.spatial_features, dropout=model_cfg.dropout,
      image_size=tuple(image_size), dtype=dtype, precision=precision,
      channel_align=channel_align(model_cfg.channel_align),
      cond_noise=model_cfg.cond_noise, cond_zero_init=model_cfg.cond_zero_init)
  return autoencoder.PixelCNNAutoEncoder(encoder, pixelcnn) if coded else pixelcnn


def channel_align(configured: int) -> int:
  """0 picks 32 on a GPU and 1 elsewhere, where padding is only extra work.
  cuDNN pads odd channel counts itself in extra kernels, and runs channels
  in multiples of 32 faster still: at 15x132, 8 gained 21% over 1 on an
  H100 and 32 another 5% over 8 on an H200, while 20x384 (only the image's
  channels grow) and the sampler were level (experiments/RESULTS.md)."""
  return configured or (32 if jax.default_backend() == "gpu" else 1)


def make_optimizer(train_cfg, mesh: Optional[Mesh] = None) -> optax.GradientTransformation:
  """optax.adamw, or optax.contrib.muon, without its learning rate, which
  `learning_rate` supplies: the update to add is
  -learning_rate(step, horizon) * tx.update(...). With `train.muon_split` and
  a mesh of several devices, each device orthogonalises only its share of
  every stack's layers."""
  clip = clip_by_global_norm(train_cfg.grad_clip, fused_norm(mesh))
  if train_cfg.optimizer == "muon":
    # A rate of -1 undoes the sign flip of optax's own rate scaling. The decay
    # applies to Muon's matrices; Adam's part (no kernels of the stacks) keeps none.
    muon = optax.contrib.muon(
        learning_rate=-1.0, weight_decay=train_cfg.weight_decay,
        muon_weight_dimension_numbers=stacked_muon_dimensions, consistent_rms=MUON_RMS)
    place = None
    if train_cfg.muon_split and mesh is not None and mesh.size > 1:
      layers = NamedSharding(mesh, P(mesh_lib.batch_axes(mesh)))
      # Only the stacks that Muon orthogonalises: Adam's are elementwise, and
      # splitting them would only add their all-gathers.
      place = lambda group, stack: (jax.lax.with_sharding_constraint(stack, layers)
                                    if group.label == "muon" else stack)
    return optax.chain(clip, _with_matmul_precision(
        shape_groups.stacked(muon, muon_label, place), MUON_PRODUCTS[train_cfg.muon_products]))
  kernels_only = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
  return optax.chain(clip, optax.scale_by_adam(b1=0.9, b2=0.999),
                     optax.add_decayed_weights(train_cfg.weight_decay, kernels_only))


# Leaves up to this many elements share one reduction in global_norm; larger
# ones keep their own. Putting 20 x 384's leaves of 0.6-4.4M weights side by
# side made its step 1.5% slower on an H100, where 15 x 132's leaves (all
# under 0.21M) gained 0.6% (experiments/RESULTS.md, "fused-norms").
FUSED_LEAF_SIZE = 1 << 18


def global_norm(tree, fused: bool = True) -> jax.Array:
  """optax.tree.norm(tree); fused, with the small leaves in one reduction.

  optax.tree.norm reduces leaf by leaf, and XLA runs each reduction as a
  kernel of its own, two for a large leaf: the gradient norm, the clip's
  norm and the weights' norm came to 368 of the 980 kernels of a 15 x 132
  step on an H200 (experiments/RESULTS.md). Leaves split over devices
  (fsdp) are reduced one by one, since putting them side by side would move
  them between devices.
  """
  if not fused:
    return optax.tree.norm(tree)
  leaves = jax.tree_util.tree_leaves(tree)
  small = [x for x in leaves if x.size <= FUSED_LEAF_SIZE]
  squares = [jnp.sum(jnp.square(x.astype(jnp.float32)))
             for x in leaves if x.size > FUSED_LEAF_SIZE]
  if small:
    flat = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in small])
    squares.append(jnp.sum(jnp.square(flat)))
  return jnp.sqrt(sum(squares, jnp.float32(0)))


def fused_norm(mesh: Optional[Mesh]) -> bool:
  """Whether global_norm may put the leaves side by side: not when the
  state is split over an fsdp axis."""
  return mesh is None or mesh.shape.get(mesh_lib.FSDP, 1) == 1


def clip_by_global_norm(max_norm: float, fused: bool) -> optax.GradientTransformation:
  """optax.clip_by_global_norm with the norm of global_norm; the same
  arithmetic and the same (empty) state, so checkpoints are unchanged."""
  def update(updates, state, params=None):
    del params
    g_norm = global_norm(updates, fused)
    trigger = g_norm < max_norm
    return jax.tree_util.tree_map(
        lambda t: jax.lax.select(trigger, t, (t / g_norm.astype(t.dtype)) * max_norm),
        updates), state
  return optax.GradientTransformation(optax.clip_by_global_norm(max_norm).init, update)


def _with_matmul_precision(tx, precision) -> optax.GradientTransformation:
  """`tx` with the float32 products of its update at `precision`
  (jax.default_matmul_precision; None: JAX's default). The model's products
  are traced outside it, so they keep theirs."""
  def update(updates, state, params=None):
    with jax.default_matmul_precision(precision):
      return tx.update(updates, state, params)
  return optax.GradientTransformation(tx.init, update)


def muon_label(path, p) -> str:
  """"muon" for each kernel of MUON_MODULES, "adam" for every other leaf."""
  names = [getattr(k, "key", None) for k in path]
  layer = next((n for n in names if str(n).startswith("layers_")), None)
  if (layer is None or names[-1] != "kernel" or names[-2] not in MUON_MODULES
      or (layer == "layers_0" and names[-2] in ("v_conv", "h_conv"))):
    return "adam"
  return "muon"


def stacked_muon_dimensions(stacks):
  """optax.contrib.MuonDimensionNumbers for each stack of Muon's kernels
  (shape_groups.stacked), None for Adam's. Axis 0 is the layers, a batch; a
  kernel's last axis is its output, and its taps and inputs are the reduction,
  so a k x k convolution is a (k*k*in) x out matrix."""
  return {group: optax.contrib.MuonDimensionNumbers(tuple(range(1, s.ndim - 1)), s.ndim - 1)
          if group.label == "muon" else None
          for group, s in stacks.items()}


def learning_rate(step, horizon, train_cfg):
  """optax.warmup_cosine_decay_schedule(0, peak, warmup, horizon, 0.01 * peak)
  at `step`, with `horizon` a traced value rather than a Python constant."""
  peak = train_cfg.learning_rate
  step = jnp.asarray(step, jnp.float32)
  horizon = jnp.asarray(horizon, jnp.float32)
  warmup = jnp.minimum(float(train_cfg.warmup_steps), jnp.maximum(horizon - 1.0, 0.0))
  rising = peak * step / jnp.maximum(warmup, 1.0)
  progress = jnp.clip((step - warmup) / jnp.maximum(horizon - warmup, 1.0), 0.0, 1.0)
  falling = peak * (0.01 + 0.99 * 0.5 * (1.0 + jnp.cos(math.pi * progress)))
  return jnp.where(step < warmup, rising, falling)


def update_ema(ema, params, step, decay: float):
  """The debiased EMA of optax.ema(decay, debias=True), kept in one copy.

  With e_t the zero-started EMA and d the decay, e_t / (1 - d^t) obeys
  ema_t = ema_{t-1} + (1 - d) / (1 - d^t) * (params_t - ema_{t-1}): the first
  update copies the params, so the average never holds the initial weights,
  and it is right from the first step however short the run. `step` is t,
  counted from 1.
  """
  t = jnp.asarray(step, jnp.float32)
  step_size = (1.0 - decay) / (1.0 - jnp.power(decay, t))
  return optax.incremental_update(params, ema, step_size)


def schedule_horizon(train_cfg) -> int:
  return train_cfg.schedule_steps or train_cfg.num_steps


def example_inputs(config, batch: int = 1):
  """Dummy (x, h) with the shapes the model is trained on, for init."""
  m = config.model
  x = jnp.zeros((batch, *config.data.image_size, m.channels), jnp.uint8)
  if m.kind != "pixelcnn" or m.conditioning == "none":
    return x, None
  if m.num_classes > 0:
    return x, jnp.zeros((batch,), jnp.int32)
  return x, jnp.zeros((batch, m.cond_dim), jnp.float32)


def create_state(config, model, tx, key) -> TrainState:
  x, h = example_inputs(config)
  params = model.init(key, x, h=h)["params"]
  ema = params if config.train.ema_decay > 0 else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), ema_params=ema,
                    horizon=jnp.asarray(schedule_horizon(config.train), jnp.int32),
                    diverged_at=jnp.zeros((), jnp.int32))


def state_shapes(config, model, tx) -> TrainState:
  """The TrainState as ShapeDtypeStructs, computing nothing."""
  return jax.eval_shape(lambda k: create_state(config, model, tx, k),
                        jax.random.PRNGKey(0))


def param_count(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))
