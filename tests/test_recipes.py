"""The recipes in experiments/ behind the reported results, run end to end
at `:smoke` size on data given as arguments, as a user reruns them on their
own copies and splits."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, one_line_error
from pixelcnn_jax import datasets


def _recipe(script, *args, **env):
  env = dict(os.environ, JAX_PLATFORMS="cpu", VARIANT=":smoke", BUDGET_S="120",
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **env)
  return subprocess.run(["bash", f"experiments/{script}", *map(str, args)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def _split(folder, name, images, labels):
  os.makedirs(folder, exist_ok=True)
  np.savez(os.path.join(folder, f"{name}.npz"), image=images, label=labels)


def _check_outputs(out, split, num_examples):
  results = [json.load(open(p)) for p in glob.glob(os.path.join(out, "eval", f"*_{split}.json"))]
  assert len(results) == 1 and results[0]["split"] == split
  assert results[0]["num_examples"] == num_examples
  assert glob.glob(os.path.join(out, "samples", "*.png"))
  assert os.path.getsize(os.path.join(out, "curves.png")) > 0


@pytest.mark.parametrize("split", ["holdout", "test"])
def test_cifar10_recipe_takes_its_data_and_split_as_arguments(tmp_path, split):
  shipped = np.load(os.path.join(REPO, "pixelcnn_jax", "assets", "cifar10_subset",
                                 "train.npz"))
  images, labels = shipped["image"], shipped["label"]
  # Two training files, as the npz copies of CIFAR-10 come, and a test split.
  _split(tmp_path / "data", "train_0", images[:250], labels[:250])
  _split(tmp_path / "data", "train_1", images[250:500], labels[250:500])
  _split(tmp_path / "data", "test", images[500:540], labels[500:540])
  done = _recipe("cifar10_h100x4.sh", tmp_path / "data", split, tmp_path / "out",
                 "--config.data.holdout=60", "--config.data.eval_limit=0")
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  _check_outputs(tmp_path / "out", split, 60 if split == "holdout" else 40)


def test_plot_curves_refuses_a_workdir_without_metrics_in_one_line(tmp_path):
  r = subprocess.run([sys.executable, "experiments/plot_curves.py", str(tmp_path),
                      str(tmp_path / "c.png")], cwd=REPO, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines() == [
      f"error: cannot read {tmp_path}/metrics.jsonl: No such file or directory"]
  assert not (tmp_path / "c.png").exists()


def test_mnist_recipe_reports_the_whole_test_split(tmp_path):
  train = np.load(os.path.join(datasets.SHIPPED_DIR, "train.npz"))
  test = np.load(os.path.join(datasets.SHIPPED_DIR, "test.npz"))
  _split(tmp_path / "data", "train", train["image"][:400], train["label"][:400])
  _split(tmp_path / "data", "test", test["image"][:70], test["label"][:70])
  done = _recipe("mnist_h100.sh", tmp_path / "data", tmp_path / "out",
                 "--config.data.holdout=50", "--config.data.eval_limit=0")
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  _check_outputs(tmp_path / "out", "test", 70)


@pytest.mark.parametrize("runs", [1, 2])
def test_portrait_recipe_chooses_checkpoints_without_the_heldout_people(tmp_path, runs):
  # The shipped MNIST digits stand in for faces: digit = person.
  train = np.load(os.path.join(datasets.SHIPPED_DIR, "train.npz"))
  pick = np.concatenate([np.flatnonzero(train["label"] == d)[:12] for d in range(10)])
  _split(tmp_path, "faces", train["image"][pick], train["label"][pick])
  out = tmp_path / "out"
  done = _recipe("olivetti_h100.sh", tmp_path / "faces.npz", out,
                 "--config.model.cond_dim=32", SIZE="14", HELDOUT="8-9", VAL="2",
                 RUNS=str(runs))
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  run_dirs = [out] if runs == 1 else [out / f"run{i}" for i in range(1, runs + 1)]
  rates = []
  for run in run_dirs:
    log = done.stdout if runs == 1 else (out / f"{run.name}.log").read_text()
    assert "val: 16 images of 8 people" in log
    # Both networks chose their checkpoints on val; eval and figures are on heldout.
    for net in ("embedding", "portraits"):
      steps = [p for p in glob.glob(str(run / net / "eval" / "*.json"))
               if os.path.basename(p)[:-5].isdigit()]
      assert steps and {json.load(open(p))["split"] for p in steps} == {"val"}, net
    assert "heldout identification accuracy" in (run / "embedding.log").read_text()
    heldout = [json.load(open(p))
               for p in glob.glob(str(run / "portraits" / "eval" / "*_heldout.json"))]
    assert len(heldout) == 1 and heldout[0]["num_examples"] == 24
    identity = json.load(open(run / "identity.json"))  # The chosen checkpoint's portraits.
    assert identity["split"] == "heldout" and identity["people"] == [8, 9]
    assert identity["step"] == heldout[0]["step"]
    assert glob.glob(str(run / "portraits" / "samples" / "interpolation_*.png"))
    rates.append(identity["identity_top1"])
  if runs > 1:
    pooled = json.load(open(out / "identity.json"))
    assert pooled["runs"] == runs and pooled["run_rates"] == rates
    assert pooled["portraits"] == runs * 2 * identity["portraits_per_person"]
    assert pooled["identity_top1"] == pytest.approx(np.mean(rates))
    assert "identity kept:" in done.stdout


@pytest.mark.parametrize("runs", ["0", "two"])
def test_the_portrait_recipe_refuses_a_bad_number_of_runs(tmp_path, runs):
  done = _recipe("olivetti_h100.sh", tmp_path / "faces.npz", tmp_path / "out", RUNS=runs)
  one_line_error(done, f"error: RUNS must be a positive whole number, got '{runs}'")


@pytest.mark.parametrize("env, error", [
    ({"SEEDS": "1 x"}, "SEEDS takes whole numbers, got 'x'"),
    ({"SEEDS": "4 04"}, "SEEDS names a seed twice: '4 04'"),
    ({"SEEDS": "  "}, "SEEDS lists no seed"),
    ({"SEEDS": "1", "RUNS": "2"}, "give RUNS or SEEDS, not both")])
def test_the_portrait_recipe_refuses_bad_seeds(tmp_path, env, error):
  done = _recipe("olivetti_h100.sh", tmp_path / "faces.npz", tmp_path / "out", **env)
  one_line_error(done, error)
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("env, names", [({"RUNS": "2"}, (1, 2)), ({"SEEDS": "7 3"}, (7, 3))])
def test_the_portrait_recipe_names_the_runs_that_failed(tmp_path, env, names):
  out = tmp_path / "out"
  done = _recipe("olivetti_h100.sh", tmp_path / "missing.npz", out, **env)
  logs = " ".join(f"{out}/run{n}.log" for n in names)
  one_line_error(done, f"error: 2 of 2 runs failed ([Errno 2] No such file or directory: "
                       f"'{tmp_path / 'missing.npz'}'); see {logs}")


def test_pooling_refuses_a_run_without_its_result(tmp_path):
  (tmp_path / "run1").mkdir()
  done = subprocess.run([sys.executable, "experiments/pool_identity.py", str(tmp_path),
                         str(tmp_path / "run1")], cwd=REPO, capture_output=True, text=True)
  one_line_error(done, f"{tmp_path / 'run1' / 'identity.json'} is missing: that run did "
                       "not finish its portraits")


def test_the_autoencoder_recipe_refuses_an_unknown_conditioning(tmp_path):
  done = _recipe("autoencoder_cifar10.sh", tmp_path, "holdout", tmp_path / "out",
                 CONDITIONING="vector spatiall")
  one_line_error(done, "CONDITIONING takes vector and/or spatial, got 'spatiall'")


def test_the_autoencoder_recipe_names_the_jobs_that_failed(tmp_path):
  # A bad flag for the PixelCNNs alone: the MSE baselines fail on the missing
  # data instead, which shows that the flag reaches only the PixelCNNs.
  out = tmp_path / "out"
  done = _recipe("autoencoder_cifar10.sh", tmp_path / "missing", "holdout", out,
                 "--config.train.optimizer=sgd", GPUS="0 0 0 0 0")
  names = ["mse10", "mse100", "unconditional", "ae10", "ae100"]
  one_line_error(done, f"error: 5 of 5 jobs failed (mse10: no files train*.npz in "
                       f"{tmp_path / 'missing'} | unconditional: config.train.optimizer "
                       "must be one of ['adamw', 'muon'], got 'sgd'); see "
                       + " ".join(f"{out}/{n}.log" for n in names))
  for name in names:
    refused = "train.optimizer must be one of" in (out / f"{name}.log").read_text()
    assert refused == (not name.startswith("mse")), name


def test_the_first_h100_runs_take_their_data_and_name_the_runs_that_failed(tmp_path):
  out = tmp_path / "out"
  done = _recipe("h100_runs.sh", tmp_path / "no_mnist", tmp_path / "no_cifar", out)
  one_line_error(done, f"error: 2 of 2 runs failed (no files train*.npz in "
                       f"{tmp_path / 'no_mnist'}); see {out}/mnist.log "
                       f"{out}/mnist_classcond.log")
  assert not (out / "cifar10.log").exists()


def test_the_face_split_refuses_people_it_cannot_split(tmp_path):
  faces = tmp_path / "faces.npz"
  np.savez(faces, image=np.zeros((12, 8, 8, 1), np.uint8), label=np.repeat(np.arange(4), 3))
  split = lambda *flags: subprocess.run(
      [sys.executable, "experiments/olivetti_split.py", str(faces), str(tmp_path / "out"),
       "--size=4", *flags], cwd=REPO, capture_output=True, text=True)
  one_line_error(split("--heldout=3", "--val_per_person=3"),
                 "--val_per_person must be in 0..2 (a training person has 3 images), got 3")
  one_line_error(split("--heldout=0-3"), "--heldout must name some, not all, of the people")
  (tmp_path / "file").write_text("")
  one_line_error(subprocess.run(
      [sys.executable, "experiments/olivetti_split.py", str(faces), str(tmp_path / "file"),
       "--size=4", "--heldout=3"],
      cwd=REPO, capture_output=True, text=True),
      f"cannot write the splits into {tmp_path / 'file'}: File exists")
  done = split("--heldout=3", "--val_per_person=1")
  assert done.returncode == 0, done.stderr
  assert "train: 6 images of 3 people" in done.stdout and "val: 3 images of 3 people" in done.stdout
  with np.load(tmp_path / "out" / "val.npz") as val:
    assert val["image"].shape == (3, 4, 4, 1) and val["label"].tolist() == [0, 1, 2]
  assert split("--heldout=3", "--val_per_person=1").returncode == 0  # The same again.
  before = (tmp_path / "out" / "train.npz").read_bytes()
  one_line_error(split("--heldout=2", "--val_per_person=1"),
                 f"{tmp_path / 'out'}/train.npz holds another split (other faces, "
                 "--heldout, --val_per_person or --size); name a new OUT_DIR")
  assert (tmp_path / "out" / "train.npz").read_bytes() == before


def test_the_autoencoder_recipe_refuses_a_seed_that_is_not_a_whole_number(tmp_path):
  done = _recipe("autoencoder_cifar10.sh", tmp_path, "holdout", tmp_path / "out", SEEDS="1 x")
  one_line_error(done, "SEEDS takes whole numbers, got 'x'")
  done = _recipe("autoencoder_cifar10.sh", tmp_path, "holdout", tmp_path / "out",
                 SEEDS="2 02")
  one_line_error(done, "SEEDS names a seed twice: '2 02'")


def test_the_seed_summary_pairs_each_decoder_with_the_unconditional_model(tmp_path):
  summary = tmp_path / "summary.txt"
  summary.write_text(
      "".join(f"{name}_s{seed}: holdout bits/dim {v} (5000 examples, step 3000, live weights)\n"
              for name, row in [("unconditional", (4.0, 3.9, 3.95)), ("ae10", (3.8, 3.85, 3.9)),
                                ("ae100", (3.9, 3.95))]
              for seed, v in enumerate(row))
      + "mse10: holdout mse 0.080238 (5000 examples, step 3000, live weights)\n")
  done = subprocess.run([sys.executable, "experiments/seed_summary.py", str(summary)],
                        cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines() == [
      "ae10: mean 3.8500, sd 0.0500 over 3 seeds",
      "ae100: mean 3.9250, sd 0.0354 over 2 seeds",
      "unconditional: mean 3.9500, sd 0.0500 over 3 seeds",
      "ae10 - unconditional: mean -0.1000, standard error 0.0500, lower at 3 of 3 seeds",
      "ae100 - unconditional: mean -0.0250, standard error 0.0750, lower at 1 of 2 seeds"]


def test_the_seed_summary_refuses_a_summary_of_one_seed(tmp_path):
  summary = tmp_path / "summary.txt"
  summary.write_text("ae10: holdout bits/dim 3.86 (5000 examples, step 3000, live weights)\n")
  summarise = lambda path: subprocess.run(
      [sys.executable, "experiments/seed_summary.py", str(path)], cwd=REPO,
      capture_output=True, text=True)
  one_line_error(summarise(summary),
                 f"error: {summary} has no per-seed results (NAME_sSEED: ...); the recipe "
                 "writes them when SEEDS lists more than one seed")
  one_line_error(summarise(tmp_path / "none.txt"),
                 f"error: cannot read {tmp_path / 'none.txt'}: No such file or directory")


def _dropout_gap(workdir, *args):
  return subprocess.run([sys.executable, "experiments/dropout_gap.py", str(workdir),
                         "--npz_dir=" + os.path.join(REPO, "pixelcnn_jax", "assets",
                                                     "cifar10_subset"), *args],
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=300)


def test_dropout_gap_scores_each_checkpoint_with_dropout_off_and_on(tmp_path, cli):
  work = tmp_path / "w"
  trained = cli("--config=configs/cifar10.py:smoke", f"--workdir={work}",
                "--config.model.dropout=0.3", "--config.train.num_steps=20",
                "--config.train.checkpoint_every=10")
  assert trained.returncode == 0, trained.stderr[-3000:]
  common = ("--examples=40", "--batch=20", "--masks=2")
  gap = _dropout_gap(work, *common, "--per_layer", f"--out={tmp_path / 'gap.jsonl'}")
  assert gap.returncode == 0, gap.stderr[-3000:]
  rows = [json.loads(line) for line in open(tmp_path / "gap.jsonl")]
  assert [r["step"] for r in rows] == [10, 20]
  for r in rows:
    assert (len(r["noise_ratio"]) == len(r["stream_rms"]) == len(r["pre_rms"])
            == len(r["kernel_rms"]) == len(r["only_layer_bpd"]) == 2)
    assert min(r["pre_rms"]) > 0
    # The first layer starts the residual stream and has no dropout: the
    # stream after it, and the score with dropout in it alone, are eval mode's,
    # and dropout in the second alone is train mode, masks and all.
    assert r["noise_ratio"][0] == 0.0 and r["noise_ratio"][1] > 0.1
    assert r["only_layer_bpd"][0] == pytest.approx(r["eval_bpd"], abs=1e-6)
    assert r["only_layer_bpd"][1] == pytest.approx(r["train_bpd"], abs=1e-6)
    assert r["train_bpd"] != r["eval_bpd"]
  # With dropout off in train mode too, both modes are the same function.
  same = _dropout_gap(work, *common, "--dropout=0", "--steps=20",
                      f"--out={tmp_path / 'same.jsonl'}")
  assert same.returncode == 0, same.stderr[-3000:]
  (row,) = [json.loads(line) for line in open(tmp_path / "same.jsonl")]
  assert row["train_bpd"] == pytest.approx(row["eval_bpd"], abs=1e-6)
  assert max(row["noise_ratio"]) == 0.0
  for args, error in [(("--steps=15",), "error: no checkpoint at step(s) [15]"),
                      (("--examples=30", "--batch=20"), "error: --examples=30 must be a"),
                      (("--dropout=1",), "error: --dropout must be in [0, 1), got 1.0"),
                      (("--npz_dir=",), "error: --npz_dir is empty")]:
    one_line_error(_dropout_gap(work, *args), error)
