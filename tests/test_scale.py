"""Data parallelism and FSDP: sharded == single-device, multi-process runs, launchers."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import pytest

import pixelcnn_jax as pj

from conftest import REPO, host_devices, one_line_error, run_cli

LAUNCH = os.path.join(REPO, "launch")


def _env(**extra):
  return dict(os.environ, JAX_PLATFORMS="cpu", **extra)


@pytest.mark.parametrize("devices,fsdp,optimizer,align,muon_split,microbatches", [
    (32, 1, "adamw", 0, 0, 1), (8, 4, "adamw", 0, 0, 1), (8, 4, "muon", 0, 0, 1),
    (8, 4, "adamw", 32, 0, 1), (8, 1, "muon", 0, 1, 1), (8, 4, "muon", 0, 1, 1),
    (8, 4, "adamw", 0, 0, 2)])
def test_sharded_step_matches_one_device(devices, fsdp, optimizer, align, muon_split,
                                         microbatches):
  """align 32 (a GPU's): biases folded into FSDP-split kernels (layers.fold_bias).
  muon_split: each device orthogonalises its share of a stack's layers.
  microbatches: the batch's slices stay split over the devices."""
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "tests", "sharded_step.py"), str(fsdp), optimizer,
       str(align), str(muon_split), str(microbatches)],
      env=_env(XLA_FLAGS=host_devices(devices)),
      capture_output=True, text=True, timeout=600, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  match = re.search(r"devices=(\d+) fsdp=(\d+) split_arrays=(\d+) max_abs_diff=(\S+) "
                    r"muon_layers=(\d+) batched_per_device=(\d+)", out.stdout)
  assert (int(match.group(1)), int(match.group(2))) == (devices, fsdp)
  # FSDP splits the params, EMA and Adam moments; data parallelism splits none.
  assert (int(match.group(3)) > 0) == (fsdp > 1)
  assert float(match.group(4)) <= 1e-5
  layers, per_device = int(match.group(5)), int(match.group(6))
  if optimizer == "muon":
    # Uneven shares are padded: 10 layers over 8 devices are 2 a device.
    assert layers > devices
    assert per_device == (-(-layers // devices) if muon_split else layers)
  else:
    assert per_device == 0


def test_microbatches_must_split_over_the_devices(tmp_path):
  refused = run_cli("--config=configs/default.py:smoke", f"--workdir={tmp_path / 'w'}",
                    "--config.train.batch_size=8", "--config.train.microbatches=4",
                    env={"XLA_FLAGS": host_devices(4)})
  one_line_error(refused, "train.batch_size=8 in train.microbatches=4 slices of 2: a slice "
                          "must be divisible by the 4 devices of the batch axes")
  assert not os.path.exists(tmp_path / "w")


def test_fsdp_trains_evaluates_and_samples_through_the_cli(tmp_path):
  four = {"XLA_FLAGS": host_devices(4)}
  args = ["--config=configs/cifar10.py:smoke", f"--workdir={tmp_path}",
          "--config.mesh.fsdp=2"]
  trained = run_cli(*args, env=four)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert "mesh {'data': 2, 'fsdp': 2}" in trained.stdout
  in_training = re.findall(r"eval_bpd (\S+)", trained.stdout)[-1]
  evaluated = run_cli(*args, "--mode=eval", env=four)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert f"bits/dim {in_training}" in evaluated.stdout
  sampled = run_cli(*args, "--mode=sample", env=four)
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert os.path.exists(sampled.stdout.strip().splitlines()[-1])
  # The split checkpoint loads whole into a single-device process.
  _, variables, _ = pj.load(str(tmp_path))
  assert all(len(x.devices()) == 1 for x in jax.tree_util.tree_leaves(variables))


def _launch(n, *args, **kw):
  return subprocess.Popen(["bash", os.path.join(LAUNCH, "local_multiprocess.sh"),
                           str(n), *args], cwd=REPO, env=_env(PYTHON=sys.executable),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **kw)


@pytest.mark.parametrize("fsdp", [1, 2])
def test_two_processes_train_identically_and_leave_a_checkpoint(tmp_path, fsdp):
  """fsdp=2 splits the state across the two processes: each writes its half of
  the checkpoint, and one process alone reads it whole."""
  args = ["--config=configs/cifar10.py:smoke", f"--workdir={tmp_path}",
          f"--config.mesh.fsdp={fsdp}"]
  proc = _launch(2, *args)
  stdout, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-3000:]
  prints = dict(re.findall(r"process (\d): params fingerprint (\S+)", stdout))
  assert set(prints) == {"0", "1"} and prints["0"] == prints["1"]
  assert "over 2 processes" in stdout and f"'fsdp': {fsdp}" in stdout
  in_training = float(re.findall(r"eval_bpd (\S+)", stdout)[-1])
  evaluated = run_cli(*args[:2], "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  # One process sums the eval batch in another order than two: the last digit may move.
  alone = float(re.search(r"holdout bits/dim (\S+)", evaluated.stdout).group(1))
  assert abs(alone - in_training) <= 1e-5, (alone, in_training)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_a_late_process_is_waited_for(tmp_path):
  address = f"127.0.0.1:{_free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(REPO, "tests", "late_process.py"),
       "--config=configs/default.py:smoke", f"--workdir={tmp_path}",
       "--config.train.num_steps=4", f"--coordinator_address={address}",
       "--num_processes=2", f"--process_id={i}"],
      cwd=REPO, env=_env(PYTHONPATH=REPO), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, stderr) in zip(procs, outs):
    assert p.returncode == 0, stderr[-3000:]
  prints = dict(re.findall(r"process (\d): params fingerprint (\S+)",
                           outs[0][0] + outs[1][0]))
  assert set(prints) == {"0", "1"} and prints["0"] == prints["1"]


def test_killed_process_is_reported_and_the_rerun_resumes(tmp_path):
  args = ["--config=configs/default.py:smoke", f"--workdir={tmp_path}",
          "--config.train.num_steps=400", "--config.train.checkpoint_every=5",
          "--config.train.eval_every=400", "--config.train.sample_every=400"]
  proc = _launch(2, *args, start_new_session=True)
  deadline = time.time() + 300
  ckpt = tmp_path / "ckpt"
  while not (ckpt.exists() and any(d.isdigit() for d in os.listdir(ckpt))):
    assert time.time() < deadline and proc.poll() is None, "no checkpoint appeared"
    time.sleep(0.5)
  victims = subprocess.run(["pgrep", "-f", f"workdir={tmp_path} .*--process_id=1"],
                           capture_output=True, text=True).stdout.split()
  assert victims
  os.kill(int(victims[0]), signal.SIGKILL)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert "a process of local_multiprocess.sh failed" in stderr
  rerun = _launch(2, *args[:2], "--config.train.num_steps=20",
                  "--config.train.eval_every=400", "--config.train.sample_every=400")
  stdout, stderr = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, stderr[-3000:]
  assert re.search(r"resumed from step [1-9]\d*", stdout)


def _dry(script, *args):
  out = subprocess.run(["bash", os.path.join(LAUNCH, script), "--dry-run", *args],
                       capture_output=True, text=True, cwd=REPO, env=_env())
  assert out.returncode == 0, out.stderr
  return out.stdout.strip().splitlines()


def test_local_multiprocess_dry_run():
  lines = _dry("local_multiprocess.sh", "3", "--config=configs/default.py",
               "--workdir=/tmp/a b")
  assert len(lines) == 3
  for i, line in enumerate(lines):
    assert "JAX_PLATFORMS=cpu" in line and "-m pixelcnn_jax.main" in line
    assert r"--workdir=/tmp/a\ b" in line
    assert line.endswith(f"--num_processes=3 --process_id={i}")
  assert len({re.search(r"coordinator_address=(\S+)", l).group(1) for l in lines}) == 1


def test_tpu_pod_dry_run():
  lines = _dry("tpu_pod.sh", "--name=pcnn", "--zone=us-central2-b", "--type=v4-64",
               "--", "--config=configs/imagenet32.py", "--workdir=gs://b/w")
  assert lines[0].startswith("gcloud compute tpus tpu-vm create pcnn ")
  assert "--accelerator-type=v4-64" in lines[0]
  assert any("--worker=all" in l and "pip install" in l for l in lines)
  run = [l for l in lines if "pixelcnn_jax.main" in l]
  assert len(run) == 1 and "--worker=all" in run[0]
  assert "--config=configs/imagenet32.py --workdir=gs://b/w" in run[0]
  assert lines[-1] == "gcloud compute tpus tpu-vm delete pcnn --zone=us-central2-b --quiet"


def test_slurm_dry_run_and_settings():
  lines = _dry("slurm.sbatch", "--config=configs/imagenet32.py", "--workdir=/shared/w")
  assert lines[0] == ("srun --kill-on-bad-exit=1 python3 -m pixelcnn_jax.main "
                      "--config=configs/imagenet32.py --workdir=/shared/w")
  assert "scontrol requeue" in lines[1]
  text = open(os.path.join(LAUNCH, "slurm.sbatch")).read()
  for setting in ("--signal=TERM@120", "--requeue", "--ntasks-per-node=8"):
    assert f"#SBATCH {setting}" in text


@pytest.mark.parametrize("script,args", [
    ("local_multiprocess.sh", ["zero"]),
    ("tpu_pod.sh", ["--name=x", "--", "--config=c"]),
    ("slurm.sbatch", []),
])
def test_launcher_bad_input(script, args):
  out = subprocess.run(["bash", os.path.join(LAUNCH, script), *args],
                       capture_output=True, text=True, cwd=REPO, env=_env())
  assert out.returncode == 2 and out.stderr.startswith("error: ")
