"""Class-conditional Gated PixelCNN on MNIST (eq. 4, one-hot digit labels).

configs/mnist.py's model with V^T h added before both nonlinearities of every
layer.

Command:  python -m pixelcnn_jax.main --config=configs/mnist_classcond.py --workdir=$W
          then --mode=sample writes a 10x10 grid, one row per digit.
Hardware: one GPU; 10 minutes on one H100 (see experiments/RESULTS.md).
Expected: test bits/dim a little below the unconditional model's (the paper
          found only a small likelihood gain from class labels).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.sibling(__file__, "mnist.py")
  c.model.conditioning = "class"
  c.model.num_classes = 10
  c.sample.num = 100
  return config_base.finish(c, arg)
