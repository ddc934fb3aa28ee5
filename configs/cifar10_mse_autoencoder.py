r"""Section 3.4's baseline: the same encoder with a deconvolutional decoder,
trained on the mean squared error.

The encoder is configs/cifar10_autoencoder.py's, with the same code size m
(model.code_dim); the decoder maps the code to a 4x4 grid and up through
transposed convolutions. The loss is the MSE on the [-1, 1] scale (x 127.5^2
for 8-bit units). Its reconstructions are the second column of the Fig. 6
grid that --mode=reconstruct draws from the PixelCNN auto-encoder's workdir.

AdamW, not configs/cifar10.py's Muon: with no gated stacks, Muon would only
hand every parameter to its Adam part, which uses Nesterov momentum, and at
m = 100 that ended at MSE 0.0279 where AdamW's five runs gave 0.0266-0.0267.

Command:  python -m pixelcnn_jax.main --config=configs/cifar10_mse_autoencoder.py \
            --workdir=$B --config.model.code_dim=10
Hardware: one GPU (a few minutes).
Expected: held-out MSE 0.0802 at m = 10 and 0.0266-0.0267 at m = 100 after
          3,000 steps at batch 64, as experiments/autoencoder_cifar10.sh trains
          it (five runs on one H200, 2026-12-01 and 02; experiments/RESULTS.md).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.sibling(__file__, "cifar10.py")
  c.model.kind = "mse_autoencoder"
  c.model.code_dim = 10
  c.model.dtype = "float32"
  c.model.dropout = 0.0
  c.train.learning_rate = 3e-4
  c.train.optimizer = "adamw"
  c.sample.num = 16
  return config_base.finish(c, arg)
