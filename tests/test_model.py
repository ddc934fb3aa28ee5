import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import pixelcnn_jax as pj
from pixelcnn_jax import layers
from conftest import example_h, random_model


def _init(**kw):
  model = pj.GatedPixelCNN(**kw)
  x = jnp.zeros((1, 4, 4, kw.get("channels", 3)), jnp.uint8)
  return model, model.init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("kw,message", [
    (dict(features=16, channels=3), "divisible by channels=3"),
    (dict(features=15, channels=3, kernel_size=4), "odd"),
    (dict(features=15, channels=2), "channels must be 1 or 3"),
    (dict(features=15, channels=3, num_layers=0), "num_layers"),
    (dict(features=15, channels=3, head_features=10), "head_features=10"),
])
def test_bad_architecture(kw, message):
  with pytest.raises(ValueError, match=message):
    _init(**kw)


def test_logits_shape_and_dtype_in_bf16():
  model, variables = _init(num_layers=2, features=12, channels=3, dtype=jnp.bfloat16)
  logits = model.apply(variables, jnp.zeros((2, 4, 4, 3), jnp.uint8))
  assert logits.shape == (2, 4, 4, 3, 256) and logits.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))


@pytest.mark.parametrize("conv,fold", [(False, False), (True, False), (False, True),
                                       (True, True)])
def test_bf16_bias_gradients_are_float32_sums(conv, fold):
  """A bf16 layer's bias gradient is its cotangent summed in float32, not a
  bf16 sum: 4,096 terms near 1, where bf16 keeps only steps of 16 (up to 0.6%
  off). Folded into an aligned kernel, the bias is a kernel row, and its
  gradient that row's: the float32 sum rounded once to bf16 (at most 2^-8)."""
  kw = dict(dtype=jnp.bfloat16, channel_align=8)
  layer = (layers.ShiftedConv(4, (1, 1), **kw) if conv else layers.MaskedDense(4, **kw))
  args = (jnp.ones((1, 64, 64, 3), jnp.bfloat16), *([((0, 0), (0, 0))] if conv else []))
  apply = lambda p: layer.apply({"params": p}, *args, aligned=fold, fold=fold)[..., :4]
  params = layer.init(jax.random.PRNGKey(0), *args)["params"]
  c = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (1, 64, 64, 4)), jnp.float32)
  grads = jax.grad(lambda p: jnp.sum(apply(p).astype(jnp.float32) * c))(params)
  expected = jnp.sum(c.astype(jnp.bfloat16).astype(jnp.float32), axis=(0, 1, 2))
  assert grads["bias"].dtype == jnp.float32
  np.testing.assert_allclose(grads["bias"], expected, rtol=2.0**-8 if fold else 1e-6)
  assert jax.jvp(apply, (params,), (params,))[1].dtype == jnp.bfloat16  # Forward mode too.


@pytest.mark.parametrize("align,reductions", [(1, 11), (32, 2)])
def test_aligned_model_reduces_only_the_heads_bias_gradients(align, reductions):
  """Aligned, every layer's biases are rows of its kernels (a ones channel in
  the padding), so the gradient reduces over positions only for the head's
  two biases; unaligned, also for each layer's three (three layers): the
  link's 1x1 has its bias added with the horizontal convolution's."""
  model = pj.GatedPixelCNN(num_layers=3, features=18, channels=3, dtype=jnp.bfloat16,
                           channel_align=align)
  x = jnp.zeros((2, 5, 6, 3), jnp.uint8)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  loss = lambda p: jnp.mean(jax.nn.log_softmax(model.apply({"params": p}, x))[..., 0])
  hlo = jax.jit(jax.grad(loss)).lower(params).as_text()
  assert sum("stablehlo.reduce" in line and "dimensions = [0, 1, 2]" in line
             for line in hlo.splitlines()) == reductions


@pytest.mark.parametrize("conditioning", ["none", "class"])
def test_bf16_model_multiplies_only_bf16_operands(conditioning):
  """The step's every matmul and convolution, forward and backward, reads
  bf16 operands: the head's too, whose float32 logits' cotangent would
  otherwise make its two gradient products float32 (TF32) ones."""
  model = pj.GatedPixelCNN(num_layers=2, features=18, channels=3, dtype=jnp.bfloat16,
                           channel_align=32, conditioning=conditioning, num_classes=4)
  x = jnp.zeros((2, 5, 6, 3), jnp.uint8)
  h = jnp.zeros((2,), jnp.int32) if conditioning == "class" else None
  params = model.init(jax.random.PRNGKey(0), x, h=h)["params"]
  loss = lambda p, x: pj.bits_per_dim(model.apply({"params": p}, x, h=h), x).mean()
  hlo = jax.jit(jax.grad(loss)).lower(params, x).as_text()
  operands = [line.split(" : (")[1].split(") -> ")[0].split(", ") for line in hlo.splitlines()
              if "stablehlo.dot_general" in line or "stablehlo.convolution" in line]
  # Each layer's four kernels and the head's two, forward and both gradients,
  # less the two into the image.
  assert len(operands) >= 3 * (2 * 4 + 2) - 2
  assert all(o.endswith("bf16>") for pair in operands for o in pair), operands
  logits, tangent = jax.jvp(lambda p: model.apply({"params": p}, x, h=h), (params,), (params,))
  assert logits.dtype == tangent.dtype == jnp.float32  # Forward mode too.


def test_wrong_image_channels():
  model, variables = _init(num_layers=1, features=6, channels=3)
  with pytest.raises(ValueError, match="expected images"):
    model.apply(variables, jnp.zeros((1, 4, 4, 1), jnp.uint8))


@pytest.mark.parametrize("conditioning,skip,align,features,num_layers", [
    ("none", False, 8, 18, 2), ("class", True, 8, 18, 2), ("spatial", False, 8, 18, 2),
    ("class", False, 32, 18, 3), ("class", True, 32, 18, 2), ("none", True, 8, 24, 3)])
def test_channel_align_changes_no_param_logit_gradient_or_dropout_mask(
    conditioning, skip, align, features, num_layers):
  """Channels padded with zeros while computing: the same parameters, the same
  sums (features 18, head 9, 3 image channels: none a multiple of 8), nothing
  added to any gradient, and dropout still at the true width (a wider mask
  would draw other bits). Biases are folded into kernels where a ones channel
  fits in the padding; with 24 features (a multiple of 8) only the image's
  channels leave room for one, so the first layer folds and the rest add."""
  model, variables = random_model(3, 3, num_layers, skip=skip, conditioning=conditioning,
                                  features=features, head_features=9, dropout=0.3)
  aligned = model.clone(channel_align=align)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 6, 7, 3), 0, 256)
  h = example_h(model, 2)
  fresh = aligned.init(jax.random.PRNGKey(0), x, h=h)
  assert (jax.tree_util.tree_map(jnp.shape, fresh)
          == jax.tree_util.tree_map(jnp.shape, variables))
  np.testing.assert_allclose(aligned.apply(variables, x, h=h),
                             model.apply(variables, x, h=h), rtol=1e-5, atol=1e-5)

  def loss(m, params):
    logits = m.apply({"params": params}, x, h=h, train=True,
                     rngs={"dropout": jax.random.PRNGKey(3)})
    return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  base = jax.value_and_grad(loss, argnums=1)(model, variables["params"])
  padded = jax.value_and_grad(loss, argnums=1)(aligned, variables["params"])
  np.testing.assert_allclose(padded[0], base[0], rtol=1e-5)
  for got, want in zip(jax.tree_util.tree_leaves(padded[1]),
                       jax.tree_util.tree_leaves(base[1])):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_channel_align_zero_means_32_on_a_gpu_only(monkeypatch):
  from pixelcnn_jax import config_base, train_state
  cfg = config_base.base().model
  cfg.features, cfg.num_layers = 12, 2
  assert cfg.channel_align == 0
  assert train_state.make_model(cfg, (4, 4)).channel_align == 1
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert train_state.make_model(cfg, (4, 4)).channel_align == 32
  cfg.channel_align = 1
  assert train_state.make_model(cfg, (4, 4)).channel_align == 1


@pytest.mark.parametrize("conditioning", ["class", "vector", "spatial"])
def test_cond_zero_init_starts_as_the_unconditional_model(conditioning):
  kw = dict(num_layers=2, features=6, channels=3, conditioning=conditioning,
            num_classes=0 if conditioning == "vector" else 4,
            cond_dim=5 if conditioning == "vector" else 0, spatial_features=4)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 5, 5, 3), 0, 256)
  h_a, h_b = ((jnp.array([0, 1]), jnp.array([2, 3])) if conditioning != "vector" else
              (jnp.ones((2, 5)), -jnp.ones((2, 5))))
  for zero, differ in ((True, False), (False, True)):
    model = pj.GatedPixelCNN(cond_zero_init=zero, **kw)
    variables = model.init(jax.random.PRNGKey(0), x, h=h_a)
    gap = np.abs(model.apply(variables, x, h=h_a) - model.apply(variables, x, h=h_b)).max()
    assert (gap > 1e-4) == differ, (zero, gap)


def test_cond_noise_only_in_training():
  model, variables = random_model(3, 3, 2, conditioning="vector", cond_noise=0.5)
  plain = model.clone(cond_noise=0.0)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 6, 7, 3), 0, 256)
  h = example_h(model, 2)
  run = lambda m, seed: m.apply(variables, x, h=h, train=True,
                                rngs={"dropout": jax.random.PRNGKey(seed)})
  assert np.abs(run(model, 0) - run(plain, 0)).max() > 1e-3
  assert np.abs(run(model, 0) - run(model, 1)).max() > 1e-3
  np.testing.assert_array_equal(model.apply(variables, x, h=h),
                                plain.apply(variables, x, h=h))


@pytest.mark.parametrize("kw,message", [
    (dict(conditioning="vector", cond_noise=-0.1), "cond_noise must be >= 0"),
    (dict(conditioning="class", cond_noise=0.1), "perturbs a real vector h"),
    (dict(conditioning="spatial", cond_noise=0.1), "with labels"),
])
def test_bad_cond_noise(kw, message):
  with pytest.raises(ValueError, match=message):
    random_model(3, 3, 1, **kw)


def test_conditioning_changes_logits():
  for mode in ("class", "vector", "spatial"):
    model, variables = random_model(3, 3, 2, conditioning=mode, size=(5, 5))
    x = jax.random.randint(jax.random.PRNGKey(0), (2, 5, 5, 3), 0, 256)
    x = jnp.concatenate([x[:1], x[:1]])
    h = (jnp.array([0, 1]) if model.num_classes
         else jax.random.normal(jax.random.PRNGKey(1), (2, model.cond_dim)))
    out = np.asarray(model.apply(variables, x, h=h))
    assert np.abs(out[0] - out[1]).max() > 1e-3, mode


def test_spatial_conditioning_is_local():
  """Perturbing s in the bottom-right corner changes the logits there only.

  The top-left region is earlier in raster order and far from the corner, so
  nothing may reach it through the image path either.
  """
  model, variables = random_model(1, 3, 2, conditioning="spatial", size=(8, 8))
  x = jax.random.randint(jax.random.PRNGKey(0), (1, 8, 8, 1), 0, 256)
  h = jnp.array([1])
  net = model.bind(variables)
  s = net.embed_condition(h, 1, 8, 8)

  def logits_with(s_map):
    def use_map(next_fun, args, kwargs, context):  # Replaces m(h) by s_map.
      if context.method_name == "embed_condition":
        return s_map
      return next_fun(*args, **kwargs)
    with nn.intercept_methods(use_map):
      return model.apply(variables, x, h=h)

  base = np.asarray(logits_with(s))
  bumped = np.asarray(logits_with(s.at[:, 6:, 6:].add(3.0)))
  diff = np.abs(bumped - base).max(axis=(-1, -2))[0]
  assert diff[6:, 6:].min() > 0
  assert diff[:4, :4].max() == 0


@pytest.mark.parametrize("mode,h,message", [
    ("none", jnp.array([0]), "unconditional"),
    ("class", None, "pass h"),
    ("class", jnp.array([0.5]), "integer class labels"),
    ("class", jnp.array([[0]]), "integer class labels"),
    ("vector", jnp.zeros((1, 4)), r"float vectors of shape \(1, 5\)"),
    ("vector", jnp.zeros((1, 5), jnp.int32), "float vectors"),
])
def test_bad_h(mode, h, message):
  model, variables = random_model(3, 3, 1, conditioning=mode, size=(4, 4))
  with pytest.raises(ValueError, match=message):
    model.apply(variables, jnp.zeros((1, 4, 4, 3), jnp.uint8), h=h)


def test_dropout_acts_in_training_only():
  model, variables = random_model(3, 3, 2, size=(5, 5), dropout=0.5)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 5, 5, 3), 0, 256)
  plain = np.asarray(model.clone(dropout=0.0).apply(variables, x))
  np.testing.assert_array_equal(np.asarray(model.apply(variables, x)), plain)
  train = lambda k: np.asarray(model.apply(variables, x, train=True,
                                           rngs={"dropout": jax.random.PRNGKey(k)}))
  assert np.abs(train(1) - plain).max() > 1e-3
  assert np.abs(train(1) - train(2)).max() > 1e-3
  np.testing.assert_array_equal(train(1), train(1))
  with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
    _init(num_layers=1, features=6, channels=3, dropout=1.0)


def test_dropout_spares_the_first_layer():
  """The first layer's output starts the residual stream, which dropout there
  would thin for every later layer: a one-layer model trains as it evaluates."""
  model, variables = random_model(3, 3, 1, size=(5, 5), dropout=0.5)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 5, 5, 3), 0, 256)
  np.testing.assert_array_equal(
      np.asarray(model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})),
      np.asarray(model.apply(variables, x)))


def test_dropout_keeps_the_model_causal():
  """Dropout is elementwise: in training, too, no output sees itself or later."""
  model, variables = random_model(3, 3, 2, size=(4, 4), dropout=0.5)
  x = jax.random.randint(jax.random.PRNGKey(0), (1, 4, 4, 3), 0, 256).astype(jnp.float32)
  out = lambda xf: model.apply(variables, xf, train=True,
                               rngs={"dropout": jax.random.PRNGKey(3)})[0].sum(-1)
  jac = np.asarray(jax.jacrev(out)(x))[:, :, :, 0]  # [H, W, C, H', W', C']
  for i, j, c in np.ndindex(4, 4, 3):
    later = np.zeros((4, 4, 3), bool)
    later.reshape(-1)[(i * 4 + j) * 3 + c:] = True
    assert np.abs(jac[i, j, c][later]).max() == 0


def test_out_of_range_labels_are_refused_when_concrete():
  model, variables = random_model(3, 3, 1, conditioning="class", size=(4, 4))
  x = jnp.zeros((2, 4, 4, 3), jnp.uint8)
  with pytest.raises(ValueError, match=r"label 99 is outside 0..3"):
    model.apply(variables, x, h=jnp.array([1, 99]))
  with pytest.raises(ValueError, match=r"label -1 is outside 0..3"):
    model.apply(variables, x, h=np.array([-1, 0]))
  # Under jit the values are unknown: documented, and the callers check first.
  jax.jit(model.apply)(variables, x, h=jnp.array([1, 2]))
