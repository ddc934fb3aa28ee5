"""Model, optimizer and train state, all built from a config.

Optimizer choice (the paper gives none): Adam with a linear warmup and a cosine
decay to 1% of the peak, after clipping the global gradient norm. Adam is what
PixelCNN++ and PixelSNAIL used for these likelihoods; the warmup keeps the
deep gated stacks from diverging in the first steps at large learning rates;
the cosine end lets a fixed step budget finish on a small learning rate; and
clipping absorbs the rare huge gradients of 256-way softmaxes early on.
"""

from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from pixelcnn_jax.model import GatedPixelCNN

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Optional[Any]

  def eval_params(self):
    """The weights to evaluate and sample with: the EMA ones when kept."""
    return self.params if self.ema_params is None else self.ema_params


def make_model(model_cfg, image_size, precision=None) -> GatedPixelCNN:
  if model_cfg.dtype not in DTYPES:
    raise ValueError(f"model.dtype must be one of {list(DTYPES)}, got "
                     f"{model_cfg.dtype!r}")
  return GatedPixelCNN(
      num_layers=model_cfg.num_layers, features=model_cfg.features,
      kernel_size=model_cfg.kernel_size, channels=model_cfg.channels,
      skip=model_cfg.skip, head_features=model_cfg.head_features,
      conditioning=model_cfg.conditioning, num_classes=model_cfg.num_classes,
      cond_dim=model_cfg.cond_dim, spatial_features=model_cfg.spatial_features,
      image_size=tuple(image_size), dtype=DTYPES[model_cfg.dtype], precision=precision)


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  # schedule_steps decouples the schedule from where this run stops, so a run
  # can be extended or cut short without re-spanning its learning rate.
  horizon = train_cfg.schedule_steps or train_cfg.num_steps
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_cfg.learning_rate,
      warmup_steps=min(train_cfg.warmup_steps, max(horizon - 1, 0)),
      decay_steps=max(horizon, 1),
      end_value=0.01 * train_cfg.learning_rate)
  return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip),
                     optax.adam(schedule, b1=0.9, b2=0.999))


def example_inputs(config, batch: int = 1):
  """Dummy (x, h) with the shapes the model is trained on, for init."""
  m = config.model
  x = jnp.zeros((batch, *config.data.image_size, m.channels), jnp.uint8)
  if m.conditioning == "none":
    return x, None
  if m.num_classes > 0:
    return x, jnp.zeros((batch,), jnp.int32)
  return x, jnp.zeros((batch, m.cond_dim), jnp.float32)


def create_state(config, model, tx, key) -> TrainState:
  x, h = example_inputs(config)
  params = model.init(key, x, h=h)["params"]
  ema = params if config.train.ema_decay > 0 else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), ema_params=ema)


def state_shapes(config, model, tx) -> TrainState:
  """The TrainState as ShapeDtypeStructs, computing nothing."""
  return jax.eval_shape(lambda k: create_state(config, model, tx, k),
                        jax.random.PRNGKey(0))


def param_count(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))
