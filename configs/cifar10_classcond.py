"""Class-conditional Gated PixelCNN on CIFAR-10 (eq. 4, one-hot class labels).

configs/cifar10.py's model with V^T h in every layer.

Command:  python -m pixelcnn_jax.main --config=configs/cifar10_classcond.py --workdir=$W
          then --mode=sample writes a 10x10 grid, one row per class.
Hardware: one or more GPUs; see experiments/RESULTS.md for a 10-minute H100 run.
Expected: slightly below the unconditional 3.03 bits/dim when converged.
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.sibling(__file__, "cifar10.py")
  c.model.conditioning = "class"
  c.model.num_classes = 10
  c.sample.num = 100
  return config_base.finish(c, arg)
