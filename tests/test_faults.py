"""Faults, not typos: divergence, damaged checkpoints, a full disk. Each ends
in one `error:` line and a non-zero exit, or, where training can go on from an
earlier checkpoint, in a line that says so; none gives a silent wrong result."""

import errno
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import checkpoint, evaluate, workdir_lock
from pixelcnn_jax.errors import UserError
from conftest import REPO, load_config, one_line_error, run_cli

SMOKE = "--config=configs/default.py:smoke"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished smoke run: checkpoints at steps 10 and 20."""
  workdir = tmp_path_factory.mktemp("trained")
  done = run_cli(SMOKE, f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  return workdir


def _copy(trained, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(trained, workdir)
  return workdir


def test_checkpoints_are_saved_on_schedule_only(trained):
  assert sorted(os.listdir(trained / "ckpt")) == ["10", "20"]  # No extra step 1.


def test_divergence_stops_at_its_step_and_saves_nothing_after(tmp_path):
  wd = f"--workdir={tmp_path}"
  result = run_cli(SMOKE, wd, "--config.train.learning_rate=1e30",
                   "--config.train.checkpoint_every=1", "--config.train.log_every=10")
  one_line_error(result, "training diverged at step ")
  bad = int(re.search(r"diverged at step (\d+)", result.stderr).group(1))
  saved = sorted(int(s) for s in os.listdir(tmp_path / "ckpt"))
  assert saved == list(range(1, bad))  # Every healthy step, nothing after.
  assert f"checkpoint {bad - 1} is the latest and is intact" in result.stderr
  evaluated = run_cli(SMOKE, wd, "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  result = json.loads((tmp_path / "eval" / f"{bad - 1}_test.json").read_text())
  assert np.isfinite(result["bits_per_dim"])


def test_a_runaway_finite_loss_also_stops(tmp_path):
  result = run_cli(SMOKE, f"--workdir={tmp_path}", "--config.train.learning_rate=1e6",
                   "--config.train.warmup_steps=0")
  one_line_error(result, "training diverged at step")


def _flip_bytes(path, every=97):
  """Sets one byte in every `every` to 0xFF: every stored chunk is hit."""
  data = bytearray(open(path, "rb").read())
  data[::every] = b"\xff" * len(data[::every])
  open(path, "wb").write(bytes(data))


def test_a_checksum_mismatch_is_refused_by_eval_and_load(trained, tmp_path):
  """Orbax stores no checksum; ours catch what its reads would pass."""
  wd = _copy(trained, tmp_path)
  meta = wd / "ckpt" / "20" / "fingerprints" / "metadata"
  sums = json.loads(meta.read_text())
  path = next(iter(sums["params"]))
  sums["params"][path][0] ^= 1
  meta.write_text(json.dumps(sums))
  one_line_error(run_cli(SMOKE, f"--workdir={wd}", "--mode=eval"),
                 f"checkpoint 20 ({wd}/ckpt/20) is corrupt: params{path} fails its "
                 "checksum")
  with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
    pj.load(str(wd))
  assert pj.load(str(wd), step=10)[2].train.num_steps == 20  # Step 10 is intact.


def test_flipped_bytes_in_the_arrays_are_never_loaded(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  for path in glob.glob(str(wd / "ckpt" / "20" / "state" / "ocdbt.process_0" / "d" / "*")):
    _flip_bytes(path)
  result = run_cli(SMOKE, f"--workdir={wd}", "--mode=eval")
  one_line_error(result, "checkpoint 20")
  assert "bits/dim" not in result.stdout


def test_training_falls_back_to_the_newest_intact_checkpoint(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  for path in glob.glob(str(wd / "ckpt" / "20" / "state" / "ocdbt.process_0" / "d" / "*")):
    _flip_bytes(path)
  resumed = run_cli(SMOKE, f"--workdir={wd}", "--config.train.num_steps=30")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "checkpoint 20" in resumed.stdout and "falling back" in resumed.stdout
  assert "resumed from step 10" in resumed.stdout
  assert os.listdir(wd / "corrupt") == ["20"]  # Moved aside, not deleted.
  assert sorted(os.listdir(wd / "ckpt")) == ["10", "20", "30"]


def test_training_stops_when_no_checkpoint_is_intact(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  for step in ("10", "20"):
    for path in glob.glob(str(wd / "ckpt" / step / "state" / "ocdbt.process_0" / "d" / "*")):
      _flip_bytes(path)
  for _ in range(2):  # Nothing moved, so a rerun is refused alike.
    one_line_error(run_cli(SMOKE, f"--workdir={wd}", "--config.train.num_steps=30"),
                   f"no intact checkpoint in {wd}/ckpt (steps 20, 10), so none was moved")
    assert sorted(os.listdir(wd / "ckpt")) == ["10", "20"]
    assert not (wd / "corrupt").exists()


def _truncate(path, keep=1 / 3):
  with open(path, "r+b") as f:
    f.truncate(int(os.path.getsize(path) * keep))


@pytest.mark.parametrize("damage", ["truncated data", "truncated metadata",
                                    "no state folder", "no manifest", "bad config"])
def test_a_damaged_checkpoint_is_one_line(trained, tmp_path, damage):
  wd = _copy(trained, tmp_path)
  step = wd / "ckpt" / "20"
  if damage == "truncated data":
    # Emptied, not cut to a third: how orbax packs arrays into files varies
    # from run to run, and a file may hold the weights in its first third and
    # only optimizer state, which eval does not read, after it.
    for path in glob.glob(str(step / "state" / "ocdbt.process_0" / "d" / "*")):
      _truncate(path, keep=0)
  elif damage == "truncated metadata":
    _truncate(step / "state" / "_METADATA")
  elif damage == "no state folder":
    shutil.rmtree(step / "state")
  elif damage == "no manifest":
    os.remove(step / "state" / "manifest.ocdbt")
  else:
    _truncate(step / "config" / "metadata")
  for mode in ("eval", "sample"):
    one_line_error(run_cli(SMOKE, f"--workdir={wd}", f"--mode={mode}"),
                   f"checkpoint 20 ({wd}/ckpt/20) is")


@pytest.mark.skipif(sys.platform != "linux", reason="ulimit -f as a full disk")
def test_a_full_disk_is_one_line_and_the_rerun_finishes(tmp_path):
  """Files may not grow past 40 kB, as on a disk that fills up. (bash sets the
  limit: a preexec_fn would run Python in a forked copy of a threaded process.)
  A 96-wide head makes one array of 96 kB, so that the checkpoint trips the
  limit however orbax packs its arrays into files."""
  head = "--config.model.head_features=96"
  command = (f"ulimit -f 40 && exec {sys.executable} -m pixelcnn_jax.main {SMOKE} "
             f"{head} --workdir={tmp_path}")
  full = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True,
                        text=True, timeout=300,
                        # The compilation cache's files would trip the limit first.
                        env=dict(os.environ, JAX_PLATFORMS="cpu",
                                 JAX_ENABLE_COMPILATION_CACHE="false"))
  one_line_error(full, "cannot save a checkpoint in")
  assert "File too large" in full.stderr
  again = run_cli(SMOKE, head, f"--workdir={tmp_path}")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "20" in os.listdir(tmp_path / "ckpt")


def test_a_failed_run_does_not_pin_its_architecture(tmp_path):
  """The config lives in the checkpoints: a run that saved none constrains nothing."""
  wd = f"--workdir={tmp_path}"
  failed = run_cli(SMOKE, wd, "--config.model.features=24",
                   f"--config.data.npz_dir={tmp_path}/missing")
  one_line_error(failed, "no files train*.npz")
  fixed = run_cli(SMOKE, wd)
  assert fixed.returncode == 0, fixed.stderr[-3000:]


def test_load_is_quiet_and_restores_no_optimizer_state(trained, monkeypatch):
  code = f"import pixelcnn_jax as pj; pj.load({str(trained)!r})"
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
  asked = []
  restore = checkpoint._restore
  monkeypatch.setattr(checkpoint, "_restore",
                      lambda mngr, step, parts: asked.append(set(parts)) or
                      restore(mngr, step, parts))
  pj.load(str(trained))
  assert asked == [{"step", "params"}]  # No Adam moments: a third of the memory.


def test_the_workdir_lock_names_its_holder_and_is_dropped_on_exit(tmp_path, monkeypatch,
                                                                   caplog):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(UserError, match=f"in use by another training run "
                                        f"\\(pid {os.getpid()} on "):
      with workdir_lock.hold(str(tmp_path)):
        pass
  with workdir_lock.hold(str(tmp_path)):  # Released with the first.
    pass
  def unsupported(*_):  # What a file system without flock answers.
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(workdir_lock.fcntl, "flock", unsupported)
  with workdir_lock.hold(str(tmp_path)):
    pass
  assert "cannot be locked (No locks available)" in caplog.text


def test_eval_refuses_a_holdout_of_images_the_run_trained_on(trained):
  one_line_error(run_cli(SMOKE, f"--workdir={trained}", "--mode=eval",
                         "--config.data.eval_split=holdout", "--config.data.holdout=100"),
                 f"workdir {trained} trained on all of its training images, so a "
                 "holdout of 100 would score 100 images it trained on; score another split")
  saved = load_config("cifar10.py", "smoke")  # Held out 100.
  asked = load_config("cifar10.py", "smoke")
  asked.data.holdout = 150
  with pytest.raises(UserError, match="all but the last 100 of its training images, so a "
                                      "holdout of 150 would score 50 images it trained on; "
                                      "set data.holdout to 100 or less"):
    evaluate._check_holdout(saved, asked, "w")
  asked.data.holdout = 50  # The last 50 of the 100 held out.
  evaluate._check_holdout(saved, asked, "w")
  asked.data.holdout, asked.data.npz_dir = 150, str(REPO)  # Other images.
  evaluate._check_holdout(saved, asked, "w")


def test_a_workdir_that_cannot_be_written_is_read_with_eval_output_dir(trained,
                                                                      tmp_path):
  """A read-only share of someone's checkpoints. Eval prints its number, then
  fails to save it; sample is refused before it reads a checkpoint; with
  eval.output_dir both write there. (Tests run as root, where permissions do
  not bite: a file where a folder should be fails the same way.)"""
  workdir = _copy(trained, tmp_path)
  for name in ("eval", "samples"):
    shutil.rmtree(workdir / name)
    (workdir / name).write_text("")
  hint = "set --config.eval.output_dir to a folder you may write"
  wd = f"--workdir={workdir}"
  result = run_cli(SMOKE, wd, "--mode=eval")
  one_line_error(result, f"cannot save the result in {workdir}/eval: File exists; it "
                         f"is printed above; {hint}")
  assert re.search(r"^test bits/dim \d\.\d{6} \(64 examples, step 20", result.stdout, re.M)
  shutil.move(workdir / "ckpt", tmp_path / "ckpt")  # The refusal comes before any read.
  one_line_error(run_cli(SMOKE, wd, "--mode=sample"),
                 f"cannot write into {workdir}/samples: File exists; {hint}")
  shutil.move(tmp_path / "ckpt", workdir / "ckpt")
  out = tmp_path / "elsewhere"
  for mode in ("eval", "sample"):
    done = run_cli(SMOKE, wd, f"--mode={mode}", f"--config.eval.output_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads((out / "eval" / "20_test.json").read_text())["step"] == 20
  assert (out / "samples" / "sample_20.png").exists()
  assert (workdir / "eval").read_text() == "" and (workdir / "samples").read_text() == ""
