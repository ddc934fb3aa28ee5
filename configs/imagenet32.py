"""Gated PixelCNN on 32x32 ImageNet, unconditional (paper Table 2: 3.83 bits/dim).

Table 2's model: 20 layers x 384 features, 5x5 kernels, trained with
synchronous updates on 32 devices at a global batch of 128 for 200K steps.

Command:  python -m pixelcnn_jax.main --config=configs/imagenet32.py --workdir=$W
          On 32 devices (e.g. a v4-64 pod slice or 4 nodes x 8 GPUs), launch the
          same command on every host: launch/tpu_pod.sh or launch/slurm.sbatch
          (launch/README.md). The global batch of 128 is split over all
          devices (4 per device on 32).
Hardware: 32 accelerators, as in the paper; any device count dividing 128 works.
Expected: validation bits/dim 3.83 after 200K steps (paper).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.base()
  c.data.dataset = "downsampled_imagenet/32x32"
  c.data.image_size = (32, 32)
  c.data.eval_split = "validation"
  c.model.channels = 3
  c.model.num_layers = 20
  c.model.features = 384
  c.model.kernel_size = 5
  c.model.dtype = "bfloat16"
  c.train.batch_size = 128
  c.train.num_steps = 200_000
  c.train.learning_rate = 5e-4
  c.train.warmup_steps = 2_000
  c.train.ema_decay = 0.9995
  c.train.eval_every = 20_000
  c.train.checkpoint_every = 2_000
  c.train.sample_every = 50_000
  c.eval.batch_size = 512
  return config_base.finish(c, arg)
