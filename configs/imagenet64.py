"""Gated PixelCNN on 64x64 ImageNet, unconditional (paper Table 2: 3.57 bits/dim).

Table 2's model, as configs/imagenet32.py: 20 layers x 384 features, 5x5
kernels, synchronous updates on 32 devices at a global batch of 128, 200K steps.

Command:  python -m pixelcnn_jax.main --config=configs/imagenet64.py --workdir=$W
          On 32 devices, launch the same command on every host: see
          launch/README.md (launch/tpu_pod.sh, launch/slurm.sbatch).
Hardware: 32 accelerators, as in the paper; any device count dividing 128 works.
Expected: validation bits/dim 3.57 after 200K steps (paper).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.sibling(__file__, "imagenet32.py")
  c.data.dataset = "downsampled_imagenet/64x64"
  c.data.image_size = (64, 64)
  c.eval.batch_size = 256
  return config_base.finish(c, arg)
