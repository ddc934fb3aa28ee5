"""Defaults shared by every config in configs/, and the `:smoke` variant.

A config file builds on `base()`, sets what differs, and returns
`finish(config, arg)`, which applies `:smoke` and locks the config so that a
mistyped `--config.key=value` is an error instead of a silent new key.
"""

import importlib.util
import json
import os

import ml_collections

from pixelcnn_jax import conditioning, datasets, model, objectives, sampling, train_state
from pixelcnn_jax.errors import UserError

SHIPPED_CIFAR = datasets.SHIPPED_DIR.replace("mnist_subset", "cifar10_subset")
# The shipped MNIST subset's stand-in vectors (assets/mnist_subset/README.md).
SMOKE_VECTOR_DIM = 8
# The keys that decide which images a run trains on and which it scores: a
# run resumed with other values would score images it trained on as held out,
# and choose its best checkpoint from numbers on different images.
SPLIT_KEYS = ("data.dataset", "data.holdout", "data.train_split", "data.eval_split",
              "data.eval_limit")


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # -1: every device of every process. Both axes split the batch; fsdp > 1
  # also splits params and optimizer state (mesh.py).
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "npz"           # "npz", or a TFDS name (datasets.TFDS_DATASETS).
  c.data.npz_dir = datasets.SHIPPED_DIR  # The MNIST subset shipped with the package.
  c.data.holdout = 0               # Last N images of `train` become split `holdout`.
  c.data.tfds_data_dir = ""
  c.data.vector_file = ""          # .npy per file group, "{split}" is replaced.
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = (28, 28)     # Model size; larger images are centre-cropped
  c.data.center_crop = False       # only when this is True.
  c.data.eval_limit = 0            # 0 = the whole split (the only honest number).
  c.data.random_flip = False       # Mirror half of each training batch.
  c.data.random_shift = 0          # Move each training image by up to N pixels.

  c.model = ml_collections.ConfigDict()
  c.model.kind = "pixelcnn"        # pixelcnn | autoencoder | mse_autoencoder | embedding
  c.model.code_dim = 0             # Auto-encoder bottleneck m; embedding size.
  c.model.encoder_features = 64    # Width of the encoder's first convolution.
  c.model.num_layers = 15
  c.model.features = 128
  c.model.kernel_size = 3
  c.model.channels = 1
  c.model.skip = False
  c.model.head_features = 0        # 0 = same as features.
  c.model.conditioning = "none"    # none | class | vector | spatial
  c.model.num_classes = 0
  c.model.cond_dim = 0
  c.model.spatial_features = 32
  c.model.dtype = "float32"        # Compute dtype; params and logits stay float32.
  c.model.dropout = 0.0            # On the horizontal stack's residual branch, after layer 0.
  c.model.channel_align = 0        # Pad channels to multiples of this; 0: 32 on GPU, else 1.
  c.model.cond_noise = 0.0         # Std of noise on a vector h in training (not on labels).
  c.model.cond_zero_init = False   # Maps from h into the gates start at zero.

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 128         # Global, over all devices and processes.
  # > 1: each step's gradient is averaged over this many slices of its batch, one
  # slice at a time: the same step in less memory (train.microbatch_value_and_grad).
  c.train.microbatches = 1
  c.train.num_steps = 10_000
  c.train.schedule_steps = 0       # Cosine horizon; 0 = num_steps.
  c.train.learning_rate = 1e-3
  c.train.warmup_steps = 500
  c.train.grad_clip = 1.0
  c.train.weight_decay = 0.0       # AdamW's decoupled decay, on kernels only.
  c.train.optimizer = "adamw"      # Or "muon": train_state.make_optimizer.
  c.train.muon_products = "float32"  # Or "bfloat16": Muon's Newton-Schulz products.
  # True: each device orthogonalises its share of every stack's layers, and the
  # updates and momentum are all-gathered (train_state.make_optimizer).
  c.train.muon_split = False
  c.train.ema_decay = 0.0          # 0 = no EMA of the params (debiased, train_state.py).
  c.train.log_every = 100
  c.train.eval_every = 2_000
  # > 0: each eval also scores the first N training images in eval mode (no
  # dropout), which tells overfitting from dropout's train/eval gap.
  c.train.eval_train_examples = 0
  c.train.checkpoint_every = 1_000
  c.train.keep_checkpoints = 3
  c.train.sample_every = 5_000
  c.train.time_limit_s = 0.0       # > 0: stop (save, eval, sample) after this long.
  c.train.time_budget_s = 0.0      # > 0: fit the schedule's horizon to it (budget.py).

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 256
  c.eval.step = "latest"           # eval/sample: "latest", "best" or a step number.
  c.eval.weights = "auto"          # "auto" (the better on the eval split), "live", "ema".
  c.eval.output_dir = ""           # eval/sample/figures: eval/ and samples/ here, not
                                   # in the workdir (a read-only share of checkpoints).
  c.eval.per_example = False       # --mode=eval: also eval/<step>_<split>_<label>.npy,
                                   # each example's value in the split's order.

  c.sample = ml_collections.ConfigDict()
  c.sample.num = 16
  c.sample.method = "cached"
  c.sample.temperature = 1.0
  c.sample.labels = ""             # e.g. "3,3,5"; default one row per class.
  c.sample.seed = 0
  c.sample.complete = False        # Complete the bottom half of eval images.
  c.sample.per_image = 4           # --mode=reconstruct: samples per code (Fig. 6).
  c.sample.baseline_workdir = ""   # --mode=reconstruct: the MSE baseline's workdir.
  c.sample.embedding_workdir = ""  # --mode=portraits/interpolate: the embedding net.
  c.sample.people = ""             # --mode=portraits/interpolate: ids; "" = all.

  c.compress = ml_collections.ConfigDict()
  c.compress.input = ""            # --mode=compress: npz or PNG folder; decompress: file.
  c.compress.output = ""           # --mode=compress: file; decompress: npz or folder.
  return c


def smoke(c: ml_collections.ConfigDict) -> None:
  """Shrinks model, data and steps: train, eval and sample in well under 60 s."""
  c.model.num_layers, c.model.features, c.model.kernel_size = 2, 12, 3
  c.model.head_features = 0
  c.model.spatial_features = 4
  c.model.encoder_features = 8
  c.model.dtype = "float32"
  c.data.dataset = "npz"
  c.data.npz_dir = SHIPPED_CIFAR if c.model.channels == 3 else datasets.SHIPPED_DIR
  c.data.holdout = 100 if c.model.channels == 3 else 0
  c.data.train_split = "train"
  c.data.eval_split = "holdout" if c.model.channels == 3 else "test"
  c.data.image_size = (8, 8)
  c.data.center_crop = True
  c.data.eval_limit = 64
  c.data.vector_file = ""
  if c.model.kind == "pixelcnn" and c.model.conditioning in ("vector", "spatial") \
      and c.model.num_classes == 0:
    if c.model.channels != 1:
      raise ValueError("':smoke' has stand-in vectors for grey images only")
    c.model.cond_dim = SMOKE_VECTOR_DIM
    c.data.vector_file = os.path.join(datasets.SHIPPED_DIR, "vec_{split}.npy")
  if c.model.num_classes > 10:
    c.model.num_classes = 10
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
  c.train.batch_size = 8
  c.train.num_steps = 20
  c.train.warmup_steps = 2
  c.train.log_every = 5
  c.train.eval_every = 20
  c.train.checkpoint_every = 10
  c.train.sample_every = 20
  c.eval.batch_size = 32
  c.sample.num = 4


def sibling(config_file: str, name: str) -> ml_collections.ConfigDict:
  """The unlocked, full-size config of `name` in the folder of `config_file`.

  Config files are loaded by path, not as a package, so a derived config
  (e.g. mnist_classcond.py from mnist.py) loads its base the same way.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), name)
  spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.unlock()
  return c


def finish(c: ml_collections.ConfigDict, arg=None) -> ml_collections.ConfigDict:
  if arg == "smoke":
    smoke(c)
  elif arg:
    raise ValueError(f"unknown config variant {arg!r}; the only one is 'smoke'")
  c.lock()
  return c


def config_json(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON values: what a checkpoint stores."""
  return json.loads(config.to_json())


def changes(before: ml_collections.ConfigDict,
            after: ml_collections.ConfigDict) -> dict:
  """{dotted key: (before, after)} for every setting that differs, compared
  as stored (config_json), so that a tuple equals the list it is saved as."""
  def flat(tree, prefix=""):
    for key, value in tree.items():
      if isinstance(value, dict):
        yield from flat(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}", value
  old, new = (dict(flat(config_json(c))) for c in (before, after))
  return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k)}


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise UserError(f"config.{message}")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises UserError, one line, for a config that cannot run, before any work."""
  m, d, t = c.model, c.data, c.train
  _check(m.kind in objectives.KINDS,
         f"model.kind must be one of {objectives.KINDS}, got {m.kind!r}")
  _check(m.kind == "pixelcnn" or (m.code_dim > 0 and m.encoder_features > 0),
         f"model.kind={m.kind!r} needs model.code_dim > 0 and model.encoder_features "
         f"> 0, got {m.code_dim} and {m.encoder_features}")
  _check(m.kind != "autoencoder" or m.conditioning in ("vector", "spatial"),
         f"model.kind='autoencoder' conditions its decoder on the code through "
         f"conditioning 'vector' (eq. 4) or 'spatial' (eq. 5), got {m.conditioning!r}")
  try:
    model.validate_architecture(m.num_layers, m.features, m.kernel_size, m.channels,
                                m.head_features, m.dropout)
    if m.kind == "autoencoder":
      conditioning.validate(m.conditioning, 0, m.code_dim)
      conditioning.validate_noise(m.cond_noise, m.conditioning, 0)
    elif m.kind == "pixelcnn":
      conditioning.validate(m.conditioning, m.num_classes, m.cond_dim)
      conditioning.validate_noise(m.cond_noise, m.conditioning, m.num_classes)
  except ValueError as e:
    raise UserError(f"config.model: {e}") from e
  _check(m.dtype in train_state.DTYPES,
         f"model.dtype must be one of {list(train_state.DTYPES)}, got {m.dtype!r}")
  _check(isinstance(m.channel_align, int) and m.channel_align >= 0,
         f"model.channel_align must be an integer >= 0 (0: 32 on a GPU, 1 elsewhere), "
         f"got {m.channel_align!r}")
  _check(m.conditioning != "spatial" or m.spatial_features > 0,
         f"model.spatial_features must be > 0, got {m.spatial_features}")
  datasets.check_name(d.dataset)
  size = tuple(d.image_size) if isinstance(d.image_size, (tuple, list)) else None
  _check(size is not None and len(size) == 2 and all(
      isinstance(v, int) and v > 0 for v in size),
         f"data.image_size must be two positive integers (height, width), got "
         f"{d.image_size!r}")
  for name, value in (("data.eval_limit", d.eval_limit), ("data.holdout", d.holdout),
                      ("train.eval_train_examples", t.eval_train_examples),
                      ("data.random_shift", d.random_shift),
                      ("train.schedule_steps", t.schedule_steps),
                      ("train.warmup_steps", t.warmup_steps),
                      ("train.weight_decay", t.weight_decay),
                      ("train.time_limit_s", t.time_limit_s),
                      ("train.time_budget_s", t.time_budget_s)):
    _check(value >= 0, f"{name} must be >= 0, got {value}")
  for name, value in (("train.num_steps", t.num_steps),
                      ("train.batch_size", t.batch_size),
                      ("train.learning_rate", t.learning_rate),
                      ("train.grad_clip", t.grad_clip),
                      ("train.log_every", t.log_every),
                      ("train.eval_every", t.eval_every),
                      ("train.checkpoint_every", t.checkpoint_every),
                      ("train.keep_checkpoints", t.keep_checkpoints),
                      ("train.sample_every", t.sample_every),
                      ("eval.batch_size", c.eval.batch_size),
                      ("sample.num", c.sample.num),
                      ("sample.per_image", c.sample.per_image),
                      ("sample.temperature", c.sample.temperature)):
    _check(value > 0, f"{name} must be > 0, got {value}")
  _check(t.optimizer in train_state.OPTIMIZERS,
         f"train.optimizer must be one of {list(train_state.OPTIMIZERS)}, got "
         f"{t.optimizer!r}")
  _check(t.muon_products in train_state.MUON_PRODUCTS,
         f"train.muon_products must be one of {list(train_state.MUON_PRODUCTS)}, got "
         f"{t.muon_products!r}")
  _check(0.0 <= t.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
  _check(c.eval.step in ("latest", "best") or c.eval.step.isdigit(),
         f"eval.step must be 'latest', 'best' or a step number, got {c.eval.step!r}")
  _check(c.eval.weights in ("auto", *train_state.WEIGHTS),
         f"eval.weights must be 'auto', 'live' or 'ema', got {c.eval.weights!r}")
  _check(isinstance(t.microbatches, int) and t.microbatches > 0
         and t.batch_size % t.microbatches == 0,
         f"train.microbatches must be a positive integer that divides train.batch_size "
         f"({t.batch_size}), got {t.microbatches!r}")
  _check(t.microbatches == 1 or m.kind != "embedding",
         "train.microbatches must be 1 for an embedding net: its triplet loss "
         "depends on the rest of its batch")
  _check(not c.eval.per_example or m.kind != "embedding",
         "eval.per_example needs a value of each image; an embedding net's triplet "
         "loss depends on the rest of its batch")
  for name, value in (("data.train_split", d.train_split),
                      ("data.eval_split", d.eval_split)):
    _check(value.strip() != "", f"{name} is empty (an unset shell variable?); name a "
           "split, e.g. 'train' or 'test'")
  _check(d.dataset != "npz" or d.npz_dir.strip(),
         "data.npz_dir is empty (an unset shell variable?); name the folder of the "
         "npz files")
  _check(c.sample.method in sampling.METHODS,
         f"sample.method must be one of {sampling.METHODS}, got {c.sample.method!r}")
  _check(not c.sample.labels or m.num_classes > 0,
         f"sample.labels={c.sample.labels!r} needs a class-conditional model "
         f"(model.num_classes > 0)")
