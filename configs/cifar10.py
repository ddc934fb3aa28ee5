"""Gated PixelCNN on CIFAR-10, unconditional (paper Table 1: 3.03 bits/dim).

Table 1 gives only the result. As far as the paper describes the model, it is
the gated block of Fig. 2; we use Table 2's kernel (5x5) at 15 layers x 384
features (128 per colour group), batch 128.

Command:  python -m pixelcnn_jax.main --config=configs/cifar10.py --workdir=$W
          (TFDS 'cifar10', eval on 'test'; offline with the npz copies:
           --config.data.dataset=npz --config.data.npz_dir=<folder of train_*.npz>
           --config.data.holdout=5000 --config.data.eval_split=holdout)
Hardware: one or more GPUs/TPU cores; the paper's number needs days of
          training, not the 10-minute runs in experiments/RESULTS.md.
Expected: test bits/dim 3.03 when trained to convergence (paper).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.base()
  c.data.dataset = "cifar10"
  c.data.image_size = (32, 32)
  c.data.eval_split = "test"
  c.model.channels = 3
  c.model.num_layers = 15
  c.model.features = 384
  c.model.kernel_size = 5
  c.model.dtype = "bfloat16"
  c.train.batch_size = 128
  c.train.num_steps = 500_000
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 2_000
  c.train.ema_decay = 0.9995
  c.train.eval_every = 10_000
  c.train.checkpoint_every = 5_000
  c.train.sample_every = 50_000
  c.eval.batch_size = 500
  return config_base.finish(c, arg)
