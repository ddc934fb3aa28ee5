"""gate_conv.py: when the vertical layers' Mosaic kernel runs, and its
backward pass, checked on the CPU with XLA's forward pass in the kernel's
place (the kernel itself needs a Hopper GPU: experiments/bench_gate_conv.py
--nhwc checks it against XLA there, experiments/RESULTS.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import config_base, gate_conv, gate_conv_kernel, train_state
from pixelcnn_jax.errors import UserError


def _xla_forward(calls):
  def forward(x, kernel, features, half, out_width, stages):
    calls.append((x.shape, kernel.shape, stages))
    pre = gate_conv.conv(x, kernel)
    return gate_conv.next_input(pre, features, half, out_width), pre
  return forward


def test_kernel_path_gives_xlas_loss_and_gradients(monkeypatch):
  """Every vertical layer takes the custom_vjp (three calls, the first on the
  image's 3 channels aligned to 32), and its backward pass (XLA's gate and
  convolution gradients from the saved pre-activation) gives the gradients
  that autodiff of XLA's forward pass gives."""
  calls = []
  monkeypatch.setattr(gate_conv, "on_hopper", lambda: True)
  monkeypatch.setattr(gate_conv_kernel, "forward", _xla_forward(calls))
  model = pj.GatedPixelCNN(num_layers=3, features=12, channels=3, channel_align=32,
                           dtype=jnp.bfloat16)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 16, 8, 3), 0, 256)
  params = model.init(jax.random.PRNGKey(1), x)["params"]

  def loss(m, params):
    return jnp.mean(jax.nn.log_softmax(m.apply({"params": params}, x))[..., 0])

  want = jax.value_and_grad(loss, argnums=1)(model, params)
  assert not calls
  got = jax.value_and_grad(loss, argnums=1)(model.clone(vertical_kernel=True), params)
  # half = 16 (12 aligned to 16), out_width = 32, five stages fit.
  assert calls == [((2, 16, 8, 32), (2, 3, 32, 32), 5)] * 3
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  for g, w in zip(jax.tree_util.tree_leaves(got[1]), jax.tree_util.tree_leaves(want[1])):
    np.testing.assert_allclose(g, w, rtol=2e-2, atol=1e-3 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("kw, use", [
    (dict(), True),
    (dict(dtype=jnp.float32), False),
    (dict(shape=(2, 16, 12, 160)), False),   # W does not divide 64.
    (dict(shape=(2, 4, 8, 160)), False),     # 32 positions: no whole 128-position block.
    (dict(shape=(2, 16, 8, 144), c_in=144), False),  # Not whole 32-channel copies.
    (dict(half=176, out_width=192), False),  # f's and g's sums past the registers.
    (dict(half=152), False),                 # Not whole 16-column output tiles.
    (dict(conditioned=True), False),         # V h enters before the gate.
    (dict(bias=True), False),                # No room for a ones channel to fold from.
    (dict(hopper=False), False),
])
def test_kernel_runs_only_where_it_applies(monkeypatch, kw, use):
  calls = []
  monkeypatch.setattr(gate_conv, "on_hopper", lambda: kw.get("hopper", True))
  monkeypatch.setattr(gate_conv_kernel, "forward", _xla_forward(calls))
  shape = kw.get("shape", (2, 16, 8, 160))
  half = kw.get("half", 144)
  x = jnp.zeros(shape, kw.get("dtype", jnp.bfloat16))
  kernel = jnp.zeros((2, 3, kw.get("c_in", shape[-1]), 2 * half), x.dtype)
  bias = jnp.zeros(2 * half, jnp.float32) if kw.get("bias") else None
  addend = jnp.zeros((2, 1, 1, 2 * half), x.dtype) if kw.get("conditioned") else None
  y, pre = gate_conv.vertical_gate(x, kernel, bias, addend, features=132, half=half,
                                   out_width=kw.get("out_width", 160), use_kernel=True)
  assert bool(calls) == use
  assert pre.shape == (*shape[:3], 2 * half)
  np.testing.assert_array_equal(y[..., 132], 1)  # The next layer's ones channel.


def test_halves_puts_g_half_a_width_after_f():
  a = jnp.arange(6.0)
  np.testing.assert_array_equal(pj.layers.halves(a, 3, 4), [0, 1, 2, 0, 3, 4, 5, 0])
  assert pj.layers.half_width(132, 32) == 144 and pj.layers.half_width(132, 1) == 132


def test_vertical_kernel_auto_means_one_device_and_off_means_off(monkeypatch):
  cfg = config_base.base().model
  cfg.features, cfg.num_layers = 12, 2
  assert not train_state.make_model(cfg, (4, 4)).vertical_kernel  # Off until timed.
  cfg.vertical_kernel = "auto"
  assert train_state.make_model(cfg, (4, 4)).vertical_kernel
  monkeypatch.setattr(jax, "device_count", lambda: 4)
  assert not train_state.make_model(cfg, (4, 4)).vertical_kernel
  cfg.vertical_kernel = "off"
  assert not train_state.make_model(cfg, (4, 4)).vertical_kernel


def test_vertical_kernel_refuses_other_settings():
  cfg = config_base.base()
  cfg.model.vertical_kernel = "on"
  with pytest.raises(UserError, match="model.vertical_kernel must be 'auto' or 'off', got 'on'"):
    config_base.validate(cfg)
