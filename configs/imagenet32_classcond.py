"""Class-conditional Gated PixelCNN on 32x32 ImageNet (paper section 3.2).

Table 2's model (20 layers x 384, 5x5) conditioned on a one-hot over the 1,000
classes. Uses TFDS 'imagenet_resized/32x32', which carries labels (the
'downsampled_imagenet' set of Table 2 has none).

Command:  python -m pixelcnn_jax.main --config=configs/imagenet32_classcond.py --workdir=$W
          with --config.sample.labels=1,1,1,... to choose classes when sampling.
Hardware: 32 accelerators at a global batch of 128, as in the paper; see
          launch/README.md.
Expected: a little below the unconditional 3.83 bits/dim; the paper found
          that class labels improve sample quality far more than likelihood.
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.sibling(__file__, "imagenet32.py")
  c.data.dataset = "imagenet_resized/32x32"
  c.model.conditioning = "class"
  c.model.num_classes = 1000
  c.sample.num = 1000
  return config_base.finish(c, arg)
