"""The benchmark scripts of experiments/ that back the performance claims:
they run end to end at a tiny size, and refuse bad arguments in one line."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixelcnn_jax import xla_defaults
from conftest import REPO

BENCH_MAIN = os.path.join(REPO, "experiments", "bench_main.py")
BENCH_TRAIN = os.path.join(REPO, "experiments", "bench_train.py")
BENCH_SAMPLE = os.path.join(REPO, "experiments", "bench_sample.py")
BENCH_GATE_CONV = os.path.join(REPO, "experiments", "bench_gate_conv.py")
BENCH_LAYER_CONVS = os.path.join(REPO, "experiments", "bench_layer_convs.py")
BENCH_DISPATCH = os.path.join(REPO, "experiments", "bench_dispatch.py")
BENCH_NLL = os.path.join(REPO, "experiments", "bench_nll.py")
BENCH_HEAD_LOSS = os.path.join(REPO, "experiments", "bench_head_loss.py")
BENCH_INPUT = os.path.join(REPO, "experiments", "bench_input.py")


def _run(script, *args, timeout):
  return subprocess.run([sys.executable, script, *args], capture_output=True,
                        text=True, timeout=timeout)


def _refusal(script, *args):
  """The stderr lines of a run that must fail."""
  r = _run(script, *args, timeout=120)
  assert r.returncode != 0
  return r.stderr.strip().splitlines()


def test_bench_main_times_main_py_and_the_bare_step(tmp_path):
  out = tmp_path / "row.jsonl"
  earlier = '{"an": "earlier run"}\n'
  out.write_text(earlier)
  r = _run(BENCH_MAIN, "--shape=2x12k3", "--batch=8", "--steps=8", "--log_every=2",
           "--bench_steps=2", "--optimizer=muon", "--dropout=0.1", f"--out={out}",
           timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert out.read_text().startswith(earlier)  # --out adds to a file, never replaces it.
  row = json.loads(out.read_text().splitlines()[1])
  assert row["main_windows"] == 2  # Steps 6 and 8: the first two windows are left out.
  assert row["optimizer"] == "muon"
  assert row["bench_img_per_s"] > 0 and row["main_img_per_s"] > 0
  assert row["dropout"] == 0.1
  assert row["main_over_bench"] == pytest.approx(row["main_img_per_s"] / row["bench_img_per_s"])
  assert row["main_over_pipelined"] == pytest.approx(
      row["main_img_per_s"] / row["bench_img_per_s_pipelined"])


@pytest.mark.parametrize("args, error", [
    (["--shape=15x132"], "--shape: LAYERSxFEATURESkKERNEL, e.g. 15x132k3, got '15x132'"),
    (["--steps=100", "--log_every=50"],
     "--steps=100 leaves no logged window after the first two (--log_every=50): "
     "give at least 150"),
    (["--optimizer=sgd"], "--optimizer: one of adamw, muon, got 'sgd'"),
    (["--dropout=1"], "--dropout: in [0, 1), got 1.0"),
])
def test_bench_main_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_MAIN, *args) == [error]


def test_bench_train_times_one_channel_images(tmp_path):
  out = tmp_path / "rows.jsonl"
  # 16 features: a width that one grey channel allows and RGB would not.
  r = _run(BENCH_TRAIN, "--shapes=2x16k3", "--image=8x6x1", "--batches=4", "--steps=2",
           "--aligns=1,8", "--optimizers=adamw,muon", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(row["image"], row["channel_align"], row["optimizer"]) for row in rows] == [
      ("8x6x1", a, o) for a in (1, 8) for o in ("adamw", "muon")]
  assert all(row["img_per_s"] > 0 and row["img_per_s_pipelined"] > 0
             and row["scaling_efficiency"] == 1.0 for row in rows)
  assert all(row["temp_gib"] > 0 for row in rows)  # The compiled step's scratch memory.
  # Rows say which XLA_FLAGS they ran under (the library's defaults, as
  # pixelcnn_jax.main runs), and the loss, which a flag that changes numerics
  # would move: near 8 bits/dim (uniform over 256) at first.
  ran_under = xla_defaults.apply({"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")})
  assert all(row["xla_flags"] == ran_under for row in rows)
  assert all(7 < row["loss_first"] < 9 and 7 < row["loss_last"] < 9 for row in rows)
  # 6 flops a kernel weight a pixel: the 48 pixels of an 8x6 image.
  assert rows[0]["train_gflop_per_img"] == rows[2]["train_gflop_per_img"]
  assert round(rows[0]["train_gflop_per_img"] * 1e9) % (6 * 48) == 0


def test_bench_train_sets_config_entries_in_every_case(tmp_path):
  """--set reaches the model: dropout moves the (seeded) first loss. Both
  runs write to one --out file, which keeps the first run's row."""
  out = tmp_path / "rows.jsonl"
  for extra in ([], ["--set=model.dropout=0.5", "--set=train.muon_products=bfloat16",
                     "--set=train.microbatches=2"]):
    r = _run(BENCH_TRAIN, "--shapes=2x12k3", "--image=8x6x1", "--batches=4", "--steps=1",
             "--optimizers=muon", f"--out={out}", *extra, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
  rows = dict(zip(("plain", "set"), map(json.loads, out.read_text().splitlines()), strict=True))
  assert rows["plain"]["set"] == {}
  assert rows["set"]["set"] == {"model.dropout": 0.5, "train.muon_products": "bfloat16",
                                "train.microbatches": 2}
  assert rows["set"]["loss_first"] != rows["plain"]["loss_first"]


@pytest.mark.parametrize("args, error", [
    (["--shapes=15x132"], "--shapes: LAYERSxFEATURESkKERNEL, e.g. 15x132k3, got '15x132'"),
    (["--image=28x28"], "--image: HEIGHTxWIDTHxCHANNELS, e.g. 28x28x1, got '28x28'"),
    (["--meshes=4x"], "--meshes: DEVICES or DEVICESxFSDP, e.g. 4x2, got '4x'"),
    (["--aligns=0,-8"], "--aligns: integers >= 0, e.g. 0,8,32, got '-8'"),
    (["--batches=128,0"], "--batches: integers >= 1, e.g. 128,256, got '0'"),
    (["--optimizers=adamw,sgd"], "--optimizers: comma-separated adamw, muon, got 'adamw,sgd'"),
    (["--set=model.dropout"], "--set: KEY=VALUE, e.g. model.dropout=0.1, got 'model.dropout'"),
    (["--set=model.nope=1"], "--set: no config entry 'model.nope' to set"),
    (["--set=model.dropout=abc"], "--set: model.dropout takes a float, got 'abc'"),
    (["--set=model.dropout=1.5"], "--set: config.model: dropout must be in [0, 1), got 1.5"),
])
def test_bench_train_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_TRAIN, *args) == [error]


@pytest.mark.parametrize("kernel, features, layout", [
    (3, 20, "--no-batch_minor"), (5, 24, "--no-batch_minor"), (3, 20, "--batch_minor"),
    (5, 24, "--batch_minor")])
def test_bench_gate_conv_kernel_matches_cudnn_and_the_gate_on_the_padded_grid(
    tmp_path, kernel, features, layout):
  """In Pallas's interpreter: y over the next layer's whole padded grid (its
  zeros, and the ones channel where the aligned width has room: 20 of 24)
  and f inside the image, against XLA's convolution and gate, with the grid
  image by image and with the batch inside each position."""
  out = tmp_path / "rows.jsonl"
  r = _run(BENCH_GATE_CONV, "--batch=3", "--size=6", f"--features={features}", "--align=8",
           f"--kernel={kernel}", "--configs=32x8x4x3,16x8x2x1", "--mosaic=64x8x5", layout,
           "--steps=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "mosaic 64x8x5: skipped, Mosaic GPU needs a Hopper GPU" in r.stdout
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [row["case"] for row in rows] == [
      "xla", "cudnn conv only", "triton 32x8x4x3", "triton 16x8x2x1"]
  assert all(row["batch_minor"] == (layout == "--batch_minor") for row in rows)
  for row in rows[2:]:
    assert row["max_diff_y"] <= 2 ** -7  # One bf16 step at 1: the gate's own rounding.
    assert row["max_diff_f"] <= 2 ** -6


@pytest.mark.parametrize("args, error", [
    (["--configs=128x32x4"], "--configs: comma-separated BMxBNxWARPSxSTAGES, all but the last "
                             "powers of two, e.g. 128x32x4x3, got '128x32x4'"),
    (["--configs=128x24x4x3"], "--configs: comma-separated BMxBNxWARPSxSTAGES, all but the "
                               "last powers of two, e.g. 128x32x4x3, got '128x24x4x3'"),
    (["--mosaic=64x32x0"], "--mosaic: comma-separated TILE_MxTILE_KxSTAGES, all but the last "
                           "powers of two, e.g. 64x32x5, got '64x32x0'"),
    (["--kernel=4"], "--kernel: odd and >= 3, got 4"),
    (["--batch=0"], "--batch: an integer >= 1, got 0"),
])
def test_bench_gate_conv_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_GATE_CONV, *args) == [error]


def test_bench_layer_convs_times_every_form_of_both_convolutions_and_they_agree(tmp_path):
  out = tmp_path / "rows.jsonl"
  r = _run(BENCH_LAYER_CONVS, "--batch=2", "--size=6", "--features=12", "--align=8",
           "--kernel=5", "--steps=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  passes = ("forward", "input grad", "kernel grad")
  # conv1d and outshift exist for the one-row horizontal kernel only.
  assert [(row["conv"], row["form"], row["pass"]) for row in rows] == [
      (c, f, p) for c, forms in (("vertical", ("conv", "im2col")),
                                 ("horizontal", ("conv", "conv1d", "im2col", "outshift")))
      for f in forms for p in passes]
  assert all(row["ms"] > 0 and row["floor_ms"] > 0 for row in rows)
  # The same sums in bf16: apart by the rounding of bf16 partial sums at most.
  assert max(row["max_diff"] for row in rows) <= 2 ** -6
  assert all(row["max_diff"] == 0 for row in rows if row["form"] == "conv")


def test_bench_layer_convs_checks_a_form_against_cudnn_without_timing_cudnn(tmp_path):
  out = tmp_path / "rows.jsonl"
  r = _run(BENCH_LAYER_CONVS, "--batch=1", "--size=4", "--features=6", "--align=8",
           "--forms=conv1d", "--steps=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert {(row["conv"], row["form"]) for row in rows} == {("horizontal", "conv1d")}
  assert all(row["max_diff"] == 0 for row in rows)  # The same cuDNN/XLA sums, reshaped.


@pytest.mark.parametrize("args, error", [
    (["--forms=conv,gemm"], "--forms: comma-separated, from conv,conv1d,im2col,outshift; "
                            "got 'conv,gemm'"),
    (["--kernel=4"], "--kernel: odd and >= 3, got 4"),
    (["--batch=0"], "--batch: an integer >= 1, got 0"),
])
def test_bench_layer_convs_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_LAYER_CONVS, *args) == [error]


def test_bench_sample_times_the_sampler_and_checks_it_against_the_naive_one(tmp_path):
  out = tmp_path / "rows.jsonl"
  r = _run(BENCH_SAMPLE, "--shapes=2x12k3", "--batches=1,2", "--kernels=xla",
           "--conv_fusion=auto,on", "--dtypes=bfloat16,float32:highest",
           "--naive_full_limit=0", "--agreement_dtypes=float32:highest",
           "--agreement_shape=2x12k3", "--agreement_num=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  timed, agreement = rows[:8], rows[8:]
  # cuDNN's fusions exist on GPUs only: the labels say what ran.
  assert [(row["dtype"], row["precision"], row["batch"], row["conv_fusion"])
          for row in timed] == [
      (d, p, b, c) for d, p in (("bfloat16", "default"), ("float32", "highest"))
      for b in (1, 2) for c in ("auto:off", "off")]
  # A float32 model reads twice the bytes a step: its floor is twice as far.
  assert timed[4]["floor_bytes_s"] == pytest.approx(2 * timed[0]["floor_bytes_s"])
  # Float32 models never take the fusions: their draws must stay bit-identical.
  assert agreement[0]["conv_fusion"] == "auto:off"
  assert all(row["cached_s"] > 0 and row["naive"] == "extrapolated" for row in timed)
  assert [(a["agreement"], a["precision"], a["kernel"]) for a in agreement] == [
      ("float32", "highest", "xla")]
  assert agreement[0]["identical"] and agreement[0]["per_step_disagreements"] == 0
  assert all(row["xla_flags"] == os.environ.get("XLA_FLAGS", "") for row in rows)


def test_bench_sample_with_no_shapes_checks_agreement_only(tmp_path):
  out = tmp_path / "rows.jsonl"
  r = _run(BENCH_SAMPLE, "--shapes=", "--kernels=xla", "--agreement_dtypes=float32:highest",
           "--agreement_shape=2x12k3", "--agreement_num=1", "--agreement_naive=0",
           f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(row["agreement"], row["shape"], row["per_step_disagreements"]) for row in rows] == [
      ("float32", "2x12k3", 0)]
  assert "identical" not in rows[0]


@pytest.mark.parametrize("script", ["profile_sample.py", "profile_train.py", "hlo_stages.py"])
def test_profilers_refuse_a_bad_shape_in_one_line(script):
  assert _refusal(os.path.join(REPO, "experiments", script), "--shape=15x132") == [
      "--shape: LAYERSxFEATURESkKERNEL, e.g. 15x132k3, got '15x132'"]


def test_profile_train_refuses_a_warmup_without_the_compiling_step_in_one_line():
  assert _refusal(os.path.join(REPO, "experiments", "profile_train.py"), "--warmup=0") == [
      "--warmup: at least 1 step, the one that compiles, got 0"]


def test_profile_train_refuses_an_unknown_config_entry_in_one_line():
  assert _refusal(os.path.join(REPO, "experiments", "profile_train.py"),
                  "--set=model.nope=1") == ["--set: no config entry 'model.nope' to set"]


def test_bench_sample_plot_names_only_the_settings_that_tell_curves_apart(tmp_path,
                                                                         monkeypatch):
  monkeypatch.syspath_prepend(os.path.dirname(BENCH_SAMPLE))
  import bench_sample
  row = lambda kernel, fused, batch: {
      "shape": "2x12 k3", "kernel": kernel, "fused": fused, "earlier": "" if kernel == "xla"
      else "auto:off", "command_buffers": "off", "unroll": 4, "channel_align": 32,
      "batch": batch, "cached_s": 0.1 * batch, "device": "cpu", "date": "2026-12-02"}
  rows = [row(k, f, b) for k, f in [("xla", ""), ("pallas", "1x32"), ("pallas", "1x64")]
          for b in (1, 16)]
  fig = bench_sample.plot(rows, tmp_path / "plot.png")
  legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  assert legend == ["2x12 k3, xla", "2x12 k3, pallas, fused 1x32", "2x12 k3, pallas, fused 1x64"]
  assert (tmp_path / "plot.png").stat().st_size > 0


def test_bench_sample_plot_draws_one_curve_per_setting_asked_for(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(os.path.dirname(BENCH_SAMPLE))
  import bench_sample
  row = lambda kernel, batch: {
      "shape": "2x12 k3", "kernel": kernel, "command_buffers": "off", "unroll": 4,
      "fused": "" if kernel == "xla" else f"auto:defaultx{8 if batch < 256 else 4}",
      "earlier": "" if kernel == "xla" else "auto:on",
      "conv_fusion": f"auto:{'on' if batch <= 64 else 'off'}", "channel_align": 32,
      "batch": batch, "cached_s": 0.1 * batch, "device": "cpu", "date": "2026-12-03"}
  rows = [row(k, b) for k in ("xla", "pallas") for b in (1, 64, 256, 1024)]
  fig = bench_sample.plot(rows, tmp_path / "plot.png")
  lines = fig.axes[0].get_lines()
  assert [len(line.get_xdata()) for line in lines] == [4, 4]
  assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
      "2x12 k3, xla", "2x12 k3, pallas"]
  # A dtype is named where the curves have more than one.
  rows += [{**row("pallas", b), "dtype": "float32", "precision": "highest"} for b in (1, 64)]
  fig = bench_sample.plot(rows, tmp_path / "plot.png")
  assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
      "2x12 k3, bfloat16, xla", "2x12 k3, bfloat16, pallas", "2x12 k3, float32:highest, pallas"]
  assert fig.axes[0].get_title() == "32x32x3 sampling, bfloat16, float32:highest, cpu, 2026-12-03"


def test_profile_train_counts_each_fusions_operands_and_results(monkeypatch):
  """The bytes behind profile_train.py's TB/s column: a fusion's operands and
  results from its computation's signature, named as the GPU kernel is."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import profile_train
  f = jax.jit(lambda x, y: jnp.tanh(x) * 2 + y.astype(jnp.float32))
  hlo = f.lower(jnp.zeros((64, 128)), jnp.zeros((64, 128), jnp.bfloat16)).compile().as_text()
  assert list(profile_train.fusion_bytes(hlo).values()) == [64 * 128 * (4 + 2 + 4)]
  gpu_style = ("%fused_add.10 (param_0.1: bf16[262144,768], param_1.2: bf16[768]) -> "
               "bf16[262144,768] {\n}\n\n"
               "  %loop_add_fusion.10 = bf16[262144,768]{1,0} fusion(%a, %b), kind=kLoop, "
               "calls=%fused_add.10, metadata={}\n")
  assert profile_train.fusion_bytes(gpu_style) == {
      "loop_add_fusion_10": 2 * (2 * 262144 * 768 + 768)}


def test_profile_train_names_the_op_behind_each_memset(monkeypatch):
  """--sources: kernels that a profile lists under no op of their own (the
  memsets), counted a step by the XLA op whose hlo_op stat they carry, with
  that op's op_name from the compiled HLO."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import profile_train
  hlo = ('  %custom-call.7 = (bf16[8,4]{1,0}, s8[64]{0}) custom-call(%a, %b), '
         'custom_call_target="__cudnn$convBackwardFilter", metadata={op_name='
         '"jit(step)/transpose(jvp(GatedPixelCNN))/layers_3.v_conv/conv"}\n'
         '  ROOT %loop_pad_fusion.2 = f32[8]{0} fusion(%c), kind=kLoop, '
         'calls=%fused_pad.2, metadata={op_name="jit(step)/jvp(GatedPixelCNN)/pad"}\n')
  names = profile_train.hlo_op_names(hlo)
  assert names == {"custom-call.7": "jit(step)/transpose(jvp(GatedPixelCNN))/layers_3.v_conv/conv",
                   "loop_pad_fusion.2": "jit(step)/jvp(GatedPixelCNN)/pad"}
  memset = lambda op, ns, size: (0, ns, "Memset 3", {"hlo_op": op,
                                                     "memset_details": f"num_bytes:{size}"})
  events = [memset("custom-call.7", 3000, 64)] * 4 + [memset("loop_pad_fusion.2", 1000, 32)] * 2 \
      + [(0, 9000, "sm90_xmma_wgrad", {"hlo_op": "custom-call.7"}),
         (0, 500, "Memset 3", {})]
  rows = profile_train.launch_sources(events, "Memset", steps=2, op_names=names)
  assert [(r["hlo_op"], r["calls_per_step"], r["us_per_step"], r["details"]) for r in rows] == [
      ("custom-call.7", 2, 6.0, "num_bytes:64"), ("loop_pad_fusion.2", 1, 1.0, "num_bytes:32"),
      ("?", 0.5, 0.25, "Memset 3")]
  assert rows[0]["op_name"].endswith("layers_3.v_conv/conv") and rows[2]["op_name"] == ""
  compiled = jax.jit(lambda x: jnp.tanh(x) * 2).lower(jnp.zeros(8)).compile().as_text()
  assert any("tanh" in n for n in profile_train.hlo_op_names(compiled).values())


def test_profile_train_refuses_a_bad_sources_pattern_in_one_line():
  lines = _refusal(os.path.join(REPO, "experiments", "profile_train.py"), "--sources=Memset(")
  assert len(lines) == 1 and lines[0].startswith("--sources: not a regular expression")


def test_profile_summaries_are_added_to_their_file(monkeypatch, tmp_path):
  """A second profile written to the same --out keeps the first."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import profile_train
  out = tmp_path / "profiles.jsonl"
  for shape in ("15x132k3", "20x384k5"):
    profile_train.write_summary({"shape": shape}, str(out))
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["shape"] for r in rows] == ["15x132k3", "20x384k5"]
  assert all(r["device"] == jax.devices()[0].device_kind for r in rows)


def test_hlo_stages_counts_a_gpu_steps_kernels_by_stage_and_kind(tmp_path, monkeypatch):
  """Instructions that run work, in the stage their op_name names; lines cut
  from a GPU step's HLO (profile_train.py --hlo)."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import hlo_stages
  meta = lambda name: f', metadata={{op_name="{name}"}}'
  hlo = "\n".join([
      "HloModule jit_step", "", "%fused_reduce.1 (p: f32[8]) -> f32[] {", "}", "",
      "ENTRY %main.1 (Arg_0.1: f32[8]) -> f32[] {",
      "  %Arg_0.1 = f32[8]{0} parameter(0)",
      "  %cudnn-conv-bias-activation.3 = (bf16[256,32,32,288]{3,2,1,0}, u8[0]{0}) "
      "custom-call(%a, %b), custom_call_target=\"__cudnn$convBiasActivationForward\""
      + meta("jit(step)/jvp(GatedPixelCNN)/conv_general_dilated"),
      "  %get-tuple-element.9 = bf16[256,32,32,288]{3,2,1,0} get-tuple-element(%c), index=0",
      "  %custom-call.4 = (bf16[262144,288]{1,0}, s8[4]{0}) custom-call(%d, %e), "
      "custom_call_target=\"__cublas$lt$matmul\""
      + meta("jit(step)/transpose(jvp(GatedPixelCNN))/dot_general"),
      "  %input_reduce_fusion.1 = f32[] fusion(%f), kind=kInput, calls=%fused_reduce.1"
      + meta("jit(step)/reduce_sum"),
      "  %wrapped_transpose.2 = f32[264,1,2,132]{3,2,1,0} fusion(%g), kind=kLoop, calls=%t",
      "  ROOT %tuple.5 = (f32[]) tuple(%input_reduce_fusion.1)",
      "}", ""])
  path = tmp_path / "hlo.txt"
  path.write_text(hlo)
  assert hlo_stages.count(hlo) == {
      "stages": {"forward": {"convolution": 1}, "backward": {"matmul": 1},
                 "update": {"reduction": 1}, "unnamed": {"transpose or copy": 1}},
      "total": 4}
  r = _run(os.path.join(REPO, "experiments", "hlo_stages.py"), str(path), "missing.txt.gz",
           timeout=60)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1].startswith("error: cannot read missing.txt.gz")


def test_hlo_stages_compiles_the_step_here(tmp_path):
  out = tmp_path / "stages.jsonl"
  r = _run(os.path.join(REPO, "experiments", "hlo_stages.py"), "--shape=2x12k3", "--batch=2",
           "--set=train.ema_decay=0.0", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  row = json.loads(out.read_text())
  assert row["set"] == ["train.ema_decay=0.0"] and row["backend"] == "cpu"
  counts = {s: sum(kinds.values()) for s, kinds in row["stages"].items()}
  assert counts["forward"] > 0 and counts["backward"] > 0 and counts["update"] > 0
  assert sum(counts.values()) == row["total"]


def test_profile_train_finds_the_idle_gaps_between_kernels(monkeypatch):
  """Overlapping kernels on two streams are one busy span; each gap between
  busy spans is counted, sized and named by the kernels either side."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import profile_train
  us = 1000
  kernels = [(0, 10 * us, "convolution.1"), (5 * us, 12 * us, "loop_add_fusion"),
             (15 * us, 20 * us, "nvjet_gemm"), (150 * us, 160 * us, "convolution.2"),
             (151 * us, 155 * us, "Memset 3")]
  gaps = profile_train.idle_gaps(kernels, steps=2)
  assert gaps["gaps_per_step"] == 1.0
  assert gaps["span_ms_per_step"] == pytest.approx(160 / 2 / 1000)
  assert gaps["idle_ms_per_step"] == pytest.approx((3 + 130) / 2 / 1000)
  assert list(gaps["idle_ms_by_size"]) == ["<5 us", "<inf us"]
  assert gaps["idle_ms_by_size"] == pytest.approx({"<5 us": 0.0015, "<inf us": 0.065})
  assert gaps["idle_ms_by_next_kind"] == pytest.approx(
      {"matmul": 0.0015, "cuDNN convolution": 0.065})
  assert [(g["us"], g["after"], g["before"]) for g in gaps["longest"]] == [
      (130.0, "nvjet_gemm", "convolution.2"), (3.0, "loop_add_fusion", "nvjet_gemm")]


def test_bench_dispatch_times_waited_and_pipelined_steps(tmp_path):
  out = tmp_path / "dispatch.jsonl"
  r = _run(BENCH_DISPATCH, "--shape=2x12k3", "--batch=4", "--steps=2", "--sleeps_ms=0,1.5",
           "--repeats=1", "--profile_steps=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  summary = json.loads(out.read_text())
  assert [row["case"] for row in summary["rows"]] == [
      "waited", "pipelined", "pipelined, batch from the host",
      "pipelined, host asleep 1.5 ms a step"]
  assert all(row["step_ms"] > 0 and row["img_per_s"] > 0 for row in summary["rows"])
  assert summary["rows"][-1]["step_ms"] >= 1.5
  assert "no GPU kernels in the trace" in r.stdout  # The CPU has no GPU timeline to read.


def test_bench_dispatch_refuses_a_negative_sleep_in_one_line():
  assert _refusal(BENCH_DISPATCH, "--sleeps_ms=0,-2") == [
      "--sleeps_ms: milliseconds >= 0, comma-separated, e.g. 0,5, got '0,-2'"]


def test_bench_nll_kernel_matches_xlas_nll_and_logsumexp(tmp_path):
  """In Pallas's interpreter: the kernel's NLL and log-sum-exp against XLA's,
  and its gradient (XLA's backward pass from the kernel's log-sum-exp)
  timed beside XLA's."""
  out = tmp_path / "nll.jsonl"
  r = _run(BENCH_NLL, "--batches=2,1", "--image=4x4x3", "--blocks=16,8", "--warps=4",
           "--reps=1", f"--out={out}", timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(row["batch"], row["case"]) for row in rows] == [
      (b, case) for b in (2, 1) for case in (
          "xla", "xla+grad", "kernel b16 w4", "kernel+grad b16 w4", "kernel b8 w4",
          "kernel+grad b8 w4")]
  kernels = [row for row in rows if row["case"].startswith("kernel b")]
  assert all(row["max_nll_diff"] < 1e-5 and row["max_lse_diff"] < 1e-5 for row in kernels)
  assert all(row["ms"] > 0 for row in rows)


@pytest.mark.parametrize("args, error", [
    (["--batches=1", "--image=4x4x3", "--blocks=32"],
     "--blocks: [32] do not divide the 48 rows of batch 1"),
    (["--warps=four"], "--warps: expected positive integers separated by commas, got 'four'"),
    (["--image=4x4"], "--image: HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3, got '4x4'"),
])
def test_bench_nll_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_NLL, *args) == [error]


def test_bench_head_loss_kernel_matches_xlas_bits_and_gradients(tmp_path):
  """In Pallas's interpreter: bits/dim and the gradients of the head's input,
  weights and bias against XLA's, for each config, beside XLA's timing."""
  out = tmp_path / "head.jsonl"
  r = _run(BENCH_HEAD_LOSS, "--batches=2", "--image=8x8x3", "--features=40", "--depth=64",
           "--configs=64x4:32x4x2,32x2x1:64x8", "--programs=9", "--reps=1", f"--out={out}",
           timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [row["case"] for row in rows] == ["xla", "kernel 64x4x1:32x4x2",
                                           "kernel 32x2x1:64x8x1"]
  assert {row["programs"] for row in rows} == {9}
  for row in rows[1:]:
    assert row["max_bits_diff"] < 1e-5
    assert all(0 < m and d < 2e-2 * m for d, m in zip(row["max_grad_diffs"], row["max_grads"]))
  assert all(row["ms_forward"] > 0 and row["ms_with_grad"] > 0 for row in rows)


@pytest.mark.parametrize("args, error", [
    (["--batches=1", "--image=4x4x3"],
     "--configs 64x4x1:32x4x2 or --depth 160: the kernel needs blocks that divide the 16 "
     "rows and a depth that is a multiple of 16"),
    (["--configs=64x4"],
     "--configs: ROWSxWARPS[xSTAGES]:ROWSxWARPS[xSTAGES], comma-separated, got '64x4'"),
    (["--configs=64x4x1x2:32x4"],
     "--configs: ROWSxWARPS[xSTAGES]:ROWSxWARPS[xSTAGES], comma-separated, got '64x4x1x2:32x4'"),
    (["--programs=0"], "--programs must be at least 1, got 0"),
    (["--features=200"], "--features must be in 1..--depth (160), got 200"),
])
def test_bench_head_loss_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_HEAD_LOSS, *args) == [error]


def test_bench_input_times_the_streams_batches_from_npz_files(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(2):
    np.savez(tmp_path / f"test_{i}.npz", image=rng.integers(0, 256, (20, 4, 4, 3), np.uint8),
             label=np.zeros(20, np.int64))
  out = tmp_path / "input.jsonl"
  r = _run(BENCH_INPUT, f"--npz_dir={tmp_path}", "--split=test", "--batches=8,16", "--flip",
           "--shift=1", "--steps=3", f"--out={out}", timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(row["split"], row["batch"], row["image"], row["flip"], row["shift"])
          for row in rows] == [("test", 8, "4x4x3", True, 1), ("test", 16, "4x4x3", True, 1)]
  assert all(row["ms_per_batch"] > 0 and row["img_per_s"] > 0 for row in rows)


@pytest.mark.parametrize("args, error", [
    (["--npz_dir=/nonexistent"], "no files train*.npz in /nonexistent"),
    (["--batches=0"], "--batches: expected positive integers separated by commas, got '0'"),
    (["--shift=-1"], "--shift must be at least 0 and --steps at least 1, got -1 and 200"),
])
def test_bench_input_refuses_bad_arguments_in_one_line(args, error):
  assert _refusal(BENCH_INPUT, *args) == [error]


def test_bench_input_refuses_an_npz_without_images_in_one_line(tmp_path):
  np.savez(tmp_path / "train.npz", pixels=np.zeros(3))
  assert _refusal(BENCH_INPUT, f"--npz_dir={tmp_path}") == [
      f"{tmp_path / 'train.npz'}: needs arrays 'image' and 'label', has ['pixels']"]


def test_gpu_power_summarises_nvidia_smi_samples(monkeypatch):
  """bench_train.py's clock and power columns: two GPUs, two samples each,
  one of them at the power cap; a GPU that reports N/A is left out."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import gpu_power
  lines = ["1980, 400.5, 0x0000000000000000", "1830, 699.0, 0x0000000000000004",
           "1980, 410.0, 0x0000000000000000", "1710, 698.5, 0x0000000000000005",
           "[N/A], [N/A], [N/A]", ""]
  assert gpu_power.summary(lines) == pytest.approx({
      "sm_mhz_mean": 1875.0, "sm_mhz_min": 1710.0, "power_w_mean": 552.0,
      "power_capped_share": 0.5})
  assert gpu_power.summary(["[N/A], [N/A], [N/A]"]) == {}


def test_gpu_power_samples_the_cases_gpus_by_nvidia_smis_numbers(monkeypatch):
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import gpu_power
  assert gpu_power.smi_indices([0, 1], {}) == [0, 1]
  assert gpu_power.smi_indices([0, 1], {"CUDA_VISIBLE_DEVICES": "2,5"}) == [2, 5]
  assert gpu_power.smi_indices([1], {"CUDA_VISIBLE_DEVICES": "3, 6"}) == [6]
  assert gpu_power.smi_indices([0], {"CUDA_VISIBLE_DEVICES": "GPU-8f1c"}) == [0]


def test_gpu_power_records_nothing_without_nvidia_smi(monkeypatch, tmp_path):
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import gpu_power
  monkeypatch.setenv("PATH", str(tmp_path))
  with gpu_power.Sampler() as s:
    pass
  assert s.result == {}


def test_gpu_power_samples_no_gpu_for_a_case_without_one(monkeypatch, tmp_path):
  """A CPU case on a machine with GPUs: nvidia-smi is there, but not run."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import gpu_power
  ran = tmp_path / "ran"
  fake = tmp_path / "nvidia-smi"
  fake.write_text(f"#!/bin/sh\ntouch {ran}\necho '1980, 650.0, 0x0'\n")
  fake.chmod(0o755)
  monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
  with gpu_power.Sampler(gpu_power.smi_indices([])) as s:
    time.sleep(0.2)
  assert s.result == {} and not ran.exists()


def test_gpu_power_reads_the_samples_taken_inside_the_block(monkeypatch, tmp_path):
  """Against a stand-in nvidia-smi that prints two samples and then waits to
  be stopped, as the real one loops until it is."""
  monkeypatch.syspath_prepend(os.path.join(REPO, "experiments"))
  import gpu_power
  fake, printed = tmp_path / "nvidia-smi", tmp_path / "printed"
  args = tmp_path / "args"
  fake.write_text(f"#!/bin/sh\necho \"$@\" > {args}\n"
                  f"echo '1980, 650.0, 0x0'\necho '1800, 700.0, 0x4'\n"
                  f"touch {printed}\nexec sleep 60\n")
  fake.chmod(0o755)
  monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
  with gpu_power.Sampler([2, 3]) as s:
    deadline = time.time() + 30
    while not printed.exists() and time.time() < deadline:
      time.sleep(0.05)
  assert s.result == pytest.approx({"sm_mhz_mean": 1890.0, "sm_mhz_min": 1800.0,
                                    "power_w_mean": 675.0, "power_capped_share": 0.5})
  assert args.read_text().split() == [
      f"--query-gpu={gpu_power.QUERY}", "--format=csv,noheader,nounits", "--loop-ms=100",
      "--id=2,3"]
