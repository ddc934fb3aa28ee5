"""The CLI as a user runs it: smoke rounds of every config and every bad input."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import datasets, objectives
from conftest import REPO, host_devices, load_config, one_line_error, run_cli

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs",
                                                                      "*.py")))


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_round(cli, tmp_path, name):
  """train -> eval -> sample of CONFIG:smoke, as the configs' docstrings say."""
  cfg, wd = f"--config=configs/{name}:smoke", f"--workdir={tmp_path}"
  kind = load_config(name, "smoke").model.kind
  objective = objectives.OBJECTIVES[kind]
  trained = cli(cfg, wd)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert f"eval_{objective.name}" in trained.stdout and "parameters" in trained.stdout
  assert "compiling the train step" in trained.stdout
  assert "train step compiled and ran in" in trained.stdout
  evaluated = cli(cfg, wd, "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  with open(tmp_path / "eval" / "20.json") as f:
    assert f"{json.load(f)[objective.label]:.6f}" in evaluated.stdout
  sampled = cli(cfg, wd, "--mode=sample")
  if kind == "embedding":
    one_line_error(sampled, "a model of kind 'embedding' draws no images")
    return
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  grid = "sample_20.png" if kind == "pixelcnn" else "reconstruct_20.png"
  assert os.path.exists(tmp_path / "samples" / grid)


def test_completion_and_labels(cli, tmp_path):
  cfg, wd = "--config=configs/mnist_classcond.py:smoke", f"--workdir={tmp_path}"
  assert cli(cfg, wd).returncode == 0
  done = cli(cfg, wd, "--mode=sample", "--config.sample.complete=True")
  assert done.returncode == 0, done.stderr[-3000:]
  assert os.path.exists(tmp_path / "samples" / "completion_20.png")
  trained_grid = (tmp_path / "samples" / "sample_20.png").read_bytes()
  chosen = cli(cfg, wd, "--mode=sample", "--config.sample.labels=3,3,5")
  assert chosen.returncode == 0, chosen.stderr[-3000:]
  # Training drew sample_20.png; a later draw of step 20 goes beside it.
  assert (tmp_path / "samples" / "sample_20.png").read_bytes() == trained_grid
  assert chosen.stdout.strip().endswith("sample_20_2.png")
  assert (tmp_path / "samples" / "sample_20_2.png").read_bytes() != trained_grid
  one_line_error(cli(cfg, wd, "--mode=sample", "--config.sample.labels=3,10"),
                  "label 10 is outside 0..9")
  one_line_error(cli(cfg, wd, "--mode=sample", "--config.sample.labels=a"),
                  "comma-separated integers")


def test_eval_keeps_each_images_bits_per_dim_in_split_order(cli, tmp_path):
  """eval.per_example on 4 devices with a padded last batch (50 of 64 test
  images in batches of 32) gives what pj.bits_per_dim gives image by image."""
  cfg, wd = "--config=configs/mnist_classcond.py:smoke", f"--workdir={tmp_path}"
  assert cli(cfg, wd).returncode == 0
  done = cli(cfg, wd, "--mode=eval", "--config.eval.per_example=True",
             "--config.data.eval_limit=50", env={"XLA_FLAGS": host_devices(4)})
  assert done.returncode == 0, done.stderr[-3000:]
  values = np.load(tmp_path / "eval" / "20_test_bits_per_dim.npy")
  with open(tmp_path / "eval" / "20_test.json") as f:
    result = json.load(f)
  assert values.shape == (50,) and result["num_examples"] == 50
  np.testing.assert_allclose(values.mean(), result["bits_per_dim"], rtol=1e-6)
  model, variables, _ = pj.load(str(tmp_path))
  split = datasets.open_for_model(load_config("mnist_classcond.py", "smoke"), "test")
  images, labels, _ = split.read(np.arange(50))
  expected = pj.bits_per_dim(model.apply(variables, images, h=labels), images)
  np.testing.assert_allclose(values, expected, rtol=1e-5)
  # Other images under the same split name (here 60 of them; an OOD set's
  # "test", say) go beside the first result; the same images again replace it.
  other = cli(cfg, wd, "--mode=eval", "--config.eval.per_example=True",
              "--config.data.eval_limit=60")
  assert other.returncode == 0, other.stderr[-3000:]
  assert np.load(tmp_path / "eval" / "20_test_2_bits_per_dim.npy").shape == (60,)
  assert json.loads((tmp_path / "eval" / "20_test_2.json").read_text())["data"][
      "eval_limit"] == 60
  np.testing.assert_array_equal(np.load(tmp_path / "eval" / "20_test_bits_per_dim.npy"),
                                values)
  same = cli(cfg, wd, "--mode=eval", "--config.data.eval_limit=50")
  assert same.returncode == 0, same.stderr[-3000:]
  assert not (tmp_path / "eval" / "20_test_3.json").exists()
  assert json.loads((tmp_path / "eval" / "20_test.json").read_text())["num_examples"] == 50
  one_line_error(cli("--config=configs/olivetti_embedding.py:smoke", wd, "--mode=eval",
                     "--config.eval.per_example=True"),
                 "eval.per_example needs a value of each image")


def _bad_npz(path):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "train.npz"), "wb") as f:
    f.write(b"\x00garbage")
  return path


def _misshaped_npz(path):
  os.makedirs(path, exist_ok=True)
  np.savez(os.path.join(path, "train.npz"), image=np.zeros((4, 8, 8), np.uint8),
           label=np.zeros(4, np.int64))
  return path


def _split_npz(path, shape_NHWC, splits=("train", "test")):
  os.makedirs(path, exist_ok=True)
  for split in splits:
    np.savez(os.path.join(path, f"{split}.npz"), image=np.zeros(shape_NHWC, np.uint8),
             label=np.zeros(shape_NHWC[0], np.int64))
  return path


def _bad_labels_npz(path):
  os.makedirs(path, exist_ok=True)
  np.savez(os.path.join(path, "train.npz"), image=np.zeros((16, 8, 8, 1), np.uint8),
           label=np.full(16, 12))
  np.savez(os.path.join(path, "test.npz"), image=np.zeros((4, 8, 8, 1), np.uint8),
           label=np.zeros(4, np.int64))
  return path


@pytest.mark.parametrize("args,match", [
    (["--config.data.dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["--config.model.fetures=12"], "'fetures' Did you mean \"features\""),
    (["--config.model.features=lots"], "features"),
    (["--config=configs/cifar10.py:smoke", "--config.model.features=16"],
     "features=16 must be divisible by channels=3"),
    (["--config.model.kernel_size=4"], "kernel_size must be odd"),
    (["--config.model.dtype=float16"], "model.dtype"),
    (["--config=configs/default.py:huge"], "unknown config variant"),
    (["--mode=eval"], "no checkpoint in workdir"),
    (["--workdir="], "--workdir is empty (an unset shell variable?); name the run's folder"),
    (["--config.data.npz_dir="], "data.npz_dir is empty (an unset shell variable?)"),
    (["--mode=eval", "--config.data.eval_split="],
     "data.eval_split is empty (an unset shell variable?); name a split"),
    (["--config.data.npz_dir={tmp}/bad"], "cannot read"),
    (["--config.data.npz_dir={tmp}/misshaped"], "'image' must be uint8 [N, H, W, 1 or 3]"),
    (["--config=configs/mnist_classcond.py:smoke",
      "--config.data.npz_dir={tmp}/labels"], "label 12 is outside 0..9"),
    (["--config.data.vector_file={tmp}/vec_{{split}}.npy",
      "--config.model.conditioning=vector", "--config.model.cond_dim=3"],
     "one row per image"),
    (["--workdir={tmp}/file/sub"], "not writable"),
    (["--config.train.batch_size=0"], "train.batch_size must be > 0"),
    (["--mode=reconstruct", "--config.sample.per_image=0"],
     "sample.per_image must be > 0, got 0"),
    (["--config.mesh.fsdp=3"], "does not fit 1 devices"),
    (["--config.train.keep_checkpoints=0"], "train.keep_checkpoints must be > 0"),
    (["--config.train.microbatches=3"], "train.microbatches must be a positive integer "
                                        "that divides train.batch_size (8), got 3"),
    (["--config.model.kind=embedding", "--config.model.code_dim=4",
      "--config.train.microbatches=2"],
     "train.microbatches must be 1 for an embedding net"),
    (["--config.data.eval_limit=-1"], "data.eval_limit must be >= 0"),
    (["--config.train.eval_train_examples=-1"], "train.eval_train_examples must be >= 0"),
    (["--config.data.image_size=0,0"], "data.image_size must be two positive integers"),
    (["--config.data.image_size=8"], "data.image_size must be two positive integers"),
    (["--config.train.learning_rate=-1"], "train.learning_rate must be > 0"),
    (["--config.train.grad_clip=-1"], "train.grad_clip must be > 0"),
    (["--config.train.warmup_steps=-5"], "train.warmup_steps must be >= 0"),
    (["--config.train.weight_decay=-0.1"], "train.weight_decay must be >= 0"),
    (["--config.train.optimizer=sgd"],
     "train.optimizer must be one of ['adamw', 'muon'], got 'sgd'"),
    (["--config.train.muon_products=fp8"],
     "train.muon_products must be one of ['float32', 'bfloat16'], got 'fp8'"),
    (["--config.train.muon_split=maybe"],
     "--config.train.muon_split=maybe: ('Non-boolean argument to boolean flag', 'maybe')"),
    (["--config.train.time_budget_s=-1"], "train.time_budget_s must be >= 0"),
    (["--config.model.dropout=-0.1"], "dropout must be in [0, 1)"),
    (["--config.data.random_shift=-1"], "data.random_shift must be >= 0, got -1"),
    (["--config.model.dropout=1.0"], "dropout must be in [0, 1)"),
    (["--config.model.channel_align=-1"], "model.channel_align must be an integer >= 0"),
    (["--config.model.cond_noise=0.1"], "cond_noise > 0 perturbs a real vector h"),
    (["--config.eval.step=worst", "--mode=eval"],
     "eval.step must be 'latest', 'best' or a step number"),
    (["--config.eval.weights=median"], "eval.weights must be 'auto', 'live' or 'ema'"),
    (["--config.sample.labels=3", "--mode=sample"], "needs a class-conditional model"),
    (["--config=configs/nope.py"], "cannot load --config: [Errno 2] No such file"),
    (["extra_argument"], "unexpected arguments: extra_argument"),
    (["--config.data.npz_dir={tmp}/bad"], "not an npz file"),
    (["--config.model.kind=gan"], "model.kind must be one of"),
    (["--config.model.kind=autoencoder"], "needs model.code_dim > 0"),
    (["--config.model.kind=autoencoder", "--config.model.code_dim=4"],
     "conditioning 'vector' (eq. 4) or 'spatial' (eq. 5)"),
    (["--config.model.kind=embedding", "--config.model.code_dim=4", "--mode=embed"],
     "set data.dataset='npz' and data.npz_dir"),
    (["--mode=reconstruct"], "--mode=reconstruct needs model.kind='autoencoder'"),
    (["--config.data.npz_dir={tmp}/rgb"],
     "dataset images have 3 channels but model.channels=1"),
    (["--config.data.center_crop=False"],
     "dataset images are 28x28 but data.image_size is 8x8 (set data.center_crop=True"),
    (["--config.data.image_size=40,40"],
     "dataset images are 28x28, smaller than data.image_size 40x40; a centre crop "
     "cannot enlarge them"),
    (["--config.data.npz_dir={tmp}/empty"], "split 'train' of npz is empty"),
    (["--config.data.eval_split=holdout"], "split 'holdout' needs config.data.holdout > 0"),
    (["--config.data.holdout=100000"],
     "holdout=100000 leaves no training images out of 10000"),
    (["--config.data.vector_file={tmp}/none_{{split}}.npy",
      "--config.model.conditioning=vector", "--config.model.cond_dim=3"],
     "cannot read vector file {tmp}/none_train.npy"),
    (["--config.mesh.data=-1", "--config.mesh.fsdp=-1"],
     "config.mesh may have at most one -1 axis"),
    (["--config.model.conditioning=spatial", "--config.model.num_classes=4",
      "--config.model.spatial_features=0"], "model.spatial_features must be > 0, got 0"),
    (["--config.train.ema_decay=1.0"], "train.ema_decay must be in [0, 1), got 1.0"),
    (["--config.sample.method=beam"],
     "sample.method must be one of ('cached', 'naive'), got 'beam'"),
    (["--mode=portraits"], "portraits need a PixelCNN conditioned on vectors"),
    (["--mode=interpolate"], "portraits need a PixelCNN conditioned on vectors"),
    (["--config=configs/cifar10_autoencoder.py:smoke", "--mode=compress"],
     "compression needs a PixelCNN (model.kind='pixelcnn'), got 'autoencoder'"),
    (["--mode=compress"], "set config.compress.input"),
    (["--config.model.conditioning=labels"],
     "conditioning must be one of ('none', 'class', 'vector', 'spatial'), got 'labels'"),
    (["--config.model.conditioning=vector"],
     "conditioning='vector' needs cond_dim > 0 and num_classes = 0"),
])
def test_bad_input(cli, tmp_path, args, match):
  _bad_npz(str(tmp_path / "bad"))
  _misshaped_npz(str(tmp_path / "misshaped"))
  _bad_labels_npz(str(tmp_path / "labels"))
  _split_npz(str(tmp_path / "rgb"), (4, 8, 8, 3))
  _split_npz(str(tmp_path / "empty"), (0, 8, 8, 1), splits=("train",))
  _split_npz(str(tmp_path / "empty"), (4, 8, 8, 1), splits=("test",))
  np.save(tmp_path / "vec_train.npy", np.zeros((7, 3), np.float32))
  (tmp_path / "file").write_text("a file, not a folder")
  args = [a.format(tmp=tmp_path) for a in args]
  match = match.format(tmp=tmp_path)
  if not any(a.startswith("--config=") for a in args):
    args.insert(0, "--config=configs/default.py:smoke")
  if not any(a.startswith("--workdir=") for a in args):
    args.append(f"--workdir={tmp_path / 'w'}")
  one_line_error(cli(*args), match)


def test_checkpoint_of_another_architecture(cli, tmp_path):
  wd = f"--workdir={tmp_path}"
  assert cli("--config=configs/default.py:smoke", wd).returncode == 0
  for mode in ("train", "eval", "sample"):
    one_line_error(cli("--config=configs/default.py:smoke", wd, f"--mode={mode}",
                        "--config.model.num_layers=3"),
                    "different architecture (num_layers: checkpoint 2 vs config 3)")


def test_a_resume_says_what_changed_and_refuses_another_optimizer_or_split(cli, tmp_path):
  muon, adamw = "--config.train.optimizer=muon", "--config.train.optimizer=adamw"
  for steps in (20, 30):  # Trains, then resumes its own state.
    run = cli("--config=configs/default.py:smoke", f"--workdir={tmp_path / 'm'}", muon,
              f"--config.train.num_steps={steps}")
    assert run.returncode == 0, run.stderr[-3000:]
    # As if step 20 had been saved before eval.output_dir existed: a key
    # added since reads as its default, so it is no change.
    saved = tmp_path / "m" / "ckpt" / "20" / "config" / "metadata"
    if steps == 20:
      stored = json.loads(saved.read_text())
      del stored["eval"]["output_dir"]
      saved.write_text(json.dumps(stored))
  assert "resumed from step 20" in run.stdout
  assert "settings changed since step 20: train.num_steps 20 -> 30\n" in run.stdout
  wd = f"--workdir={tmp_path / 'a'}"
  assert cli("--config=configs/default.py:smoke", wd, adamw).returncode == 0
  one_line_error(cli("--config=configs/default.py:smoke", wd, muon,
                     "--config.train.num_steps=30"),
                 "was trained with train.optimizer='adamw', whose state cannot continue "
                 "as 'muon'; use a new --workdir")
  # More images held out would score some that the run has trained on.
  one_line_error(cli("--config=configs/default.py:smoke", wd, adamw,
                     "--config.data.holdout=100", "--config.train.num_steps=30"),
                 "was trained with data.holdout=0, not 100, which changes the images it "
                 "trains on or is scored on; use a new --workdir, or --mode=eval")
  assert sorted(os.listdir(tmp_path / "a" / "ckpt")) == ["10", "20"]
  # Eval needs no optimizer state, so it takes either.
  assert cli("--config=configs/default.py:smoke", wd, muon, "--mode=eval").returncode == 0


def test_sigterm_saves_and_exits_for_requeue(tmp_path):
  """What SLURM's --signal=TERM@120 does: the run saves its step, exits 75,
  and the same command resumes from there. While it runs, a second training
  run in its workdir is refused, and eval, which only reads, is not."""
  args = [sys.executable, "-m", "pixelcnn_jax.main", "--config=configs/default.py:smoke",
          f"--workdir={tmp_path}", "--config.train.num_steps=100000",
          "--config.train.checkpoint_every=100000", "--config.train.log_every=1"]
  proc = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  for line in proc.stdout:
    if "eval_bpd" in line:  # Step 20's eval, which saves a checkpoint.
      break
    assert time.time() < deadline
  one_line_error(run_cli("--config=configs/default.py:smoke", f"--workdir={tmp_path}"),
                 f"workdir {tmp_path} is in use by another training run (pid {proc.pid} "
                 "on ")
  assert run_cli("--config=configs/default.py:smoke", f"--workdir={tmp_path}",
                 "--mode=eval").returncode == 0
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 75, stderr[-2000:]
  assert "preempted: SIGTERM: saved step" in stderr
  saved = [int(d) for d in os.listdir(tmp_path / "ckpt") if d.isdigit()]
  assert saved and max(saved) >= 3
  resumed = run_cli("--config=configs/default.py:smoke", f"--workdir={tmp_path}",
                    f"--config.train.num_steps={max(saved) + 2}")
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resumed from step {max(saved)}" in resumed.stdout


def test_every_split_is_checked_before_the_first_step(cli, tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  np.savez(data / "train.npz", image=np.zeros((16, 8, 8, 1), np.uint8),
           label=np.arange(16) % 10)
  np.savez(data / "test.npz", image=np.zeros((4, 8, 8, 1), np.uint8),
           label=np.array([1, 2, 12, 3]))
  result = cli("--config=configs/mnist_classcond.py:smoke", f"--workdir={tmp_path / 'w'}",
               f"--config.data.npz_dir={data}")
  one_line_error(result, "split 'test': label 12 is outside 0..9")
  assert "step 1" not in result.stdout and not (tmp_path / "w" / "ckpt").exists()


def test_completing_for_a_vector_model_needs_its_vectors(cli, tmp_path):
  for split, rows in (("train", 10_000), ("test", 2_000)):  # The shipped subset.
    np.save(tmp_path / f"vec_{split}.npy",
            np.random.default_rng(0).normal(size=(rows, 3)).astype(np.float32))
  args = ["--config=configs/default.py:smoke", f"--workdir={tmp_path / 'w'}",
          "--config.model.conditioning=vector", "--config.model.cond_dim=3"]
  trained = cli(*args, f"--config.data.vector_file={tmp_path}/vec_{{split}}.npy")
  assert trained.returncode == 0, trained.stderr[-3000:]
  one_line_error(cli(*args, "--mode=sample", "--config.sample.complete=True"),
                 "set data.vector_file")
