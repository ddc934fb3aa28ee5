r"""Section 3.3, step 2: portraits conditioned on a face embedding (eq. 4).

A Gated PixelCNN on the 64x64 grey faces of the 30 training people, with
h = f(x), the configs/olivetti_embedding.py net's vector of the image itself
(read from data.vector_file, written by that config's --mode=embed). 240
images (2 more of each person form the val split) are little data: half of
each batch is mirrored (its vector stays: a mirrored face is the same
person), dropout 0.3, and the best checkpoint by bits/dim on val is what the
figures use; the held-out people choose nothing. Without more, the
network learns to recall each training image from its own vector, and a
held-out person's vector then costs up to 17 bits/dim (experiments/RESULTS.md).
So h gets noise in training, N(0, 0.07^2) per component: a noise vector of
norm about 0.07 * sqrt(32) = 0.40, the median distance between two
embeddings of one person (different people lie 1.1 or more apart in 90% of
pairs), so h still says who, but no longer which photo. The cosine ends at
3,000 steps, checkpoints every 500: bits/dim on val stop improving after
2,000 to 3,000 steps, and a schedule that has decayed by then keeps identity
better than an early checkpoint of a longer one (experiments/RESULTS.md).
Then --mode=portraits draws 8 new portraits from one photo of each held-out
person and checks, with the embedding net, that they keep the identity;
--mode=interpolate draws Fig. 5.

Command:  python -m pixelcnn_jax.main --config=configs/olivetti_portraits.py \
            --workdir=$P --config.data.npz_dir=$D \
            --config.data.vector_file=$D/vec_{split}.npy
          ... --mode=portraits --config.sample.embedding_workdir=$E --config.eval.step=best \
              --config.data.eval_split=heldout
          ... --mode=interpolate (the same flags)
          The whole of section 3.3: experiments/olivetti_h100.sh.
Hardware: one GPU (about 3 minutes for both networks at 32x32).
Expected: at 32x32 (SIZE=32), checkpoints chosen on val, 32 portraits per
          held-out person: 57.4% of 1,920 portraits of six runs keep the
          identity (49.7% to 70.6% a run; chance 10%; embedding net 91-98% on
          the held-out people), 4.39-4.41 bits/dim on val at the chosen
          step 2,500 (one H200, 2026-12-04). Target >= 50%. RUNS=6 in
          olivetti_h100.sh makes six runs and pools their rates. The
          portrait and interpolation modes draw at sample.temperature (0.7
          to 0.9 kept no more identity than 1).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.base()
  c.data.dataset = "npz"
  c.data.image_size = (64, 64)
  c.data.train_split = "train"
  c.data.eval_split = "val"
  c.data.random_flip = True
  c.model.channels = 1
  c.model.num_layers = 12
  c.model.features = 96
  c.model.kernel_size = 5
  c.model.conditioning = "vector"
  c.model.cond_dim = 32
  c.model.dropout = 0.3
  c.model.cond_noise = 0.07
  c.model.dtype = "bfloat16"
  c.train.batch_size = 32
  c.train.num_steps = 3_000
  c.train.learning_rate = 1e-3
  c.train.ema_decay = 0.999
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.train.sample_every = 100_000
  c.eval.batch_size = 100
  c.sample.num = 16
  c.sample.per_image = 8
  return config_base.finish(c, arg)
