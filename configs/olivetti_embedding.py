r"""Section 3.3, step 1: a face embedding trained with FaceNet's triplet loss.

A small conv net (4 strided convolutions, 32 to 256 maps, then a dense map to
32 numbers, normalised to unit length) on the Olivetti faces of the 30
training people; semi-hard negatives are mined in each batch of 64, and half
the images are mirrored. Checkpoints are chosen by the triplet loss on the
val split (2 unseen photos of each training person). The heldout split holds
the 10 other people, whom the net never sees and who choose nothing:
--mode=embed with eval_split=heldout reports the nearest-mean identification
accuracy on them; --mode=embed writes the vectors of the train split and the
eval split, which configs/olivetti_portraits.py reads.

Command:  python experiments/olivetti_split.py ../shared/data/olivetti_faces/all.npz $D
          python -m pixelcnn_jax.main --config=configs/olivetti_embedding.py \
            --workdir=$E --config.data.npz_dir=$D
          ... --mode=embed --config.eval.step=best     (vec_train, vec_val)
          ... --mode=embed --config.eval.step=best --config.data.eval_split=heldout
          The whole of section 3.3: experiments/olivetti_h100.sh.
Hardware: one GPU (a minute or two), or a CPU (slowly).
Expected: 91-98% identification of the held-out people at 32x32 (twelve
          runs, checkpoints chosen on val, one H200; 93-97% when the held-out
          people chose them; experiments/RESULTS.md).
"""

from pixelcnn_jax import config_base


def get_config(arg=None):
  c = config_base.base()
  c.data.dataset = "npz"
  c.data.image_size = (64, 64)
  c.data.train_split = "train"
  c.data.eval_split = "val"
  c.data.random_flip = True
  c.model.kind = "embedding"
  c.model.channels = 1
  c.model.code_dim = 32
  c.model.encoder_features = 32
  c.train.batch_size = 64
  c.train.num_steps = 3_000
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 100
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.eval.batch_size = 100
  return config_base.finish(c, arg)
