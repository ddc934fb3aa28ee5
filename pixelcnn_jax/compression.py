"""Lossless image compression with a trained PixelCNN: its bits/dim, on disk.

Each sub-pixel is range-coded (constriction's queue coder, so that symbols
are written in the order the model predicts them) with the model's 256-way
distribution, quantised on the device to integer frequencies: floor(p * 2^16)
+ 1, so that no value has zero frequency. Encoder and decoder compute these
frequencies on one code path, the cached sampler's loop (cached_loop.py)
in float32: teacher-forced with the known pixels when encoding, fed the
decoded pixels when decoding; a host callback does the coding at every step.

Guarantee: decoding is exact on the same machine, platform and software
versions as encoding. Across platforms (CPU and GPU, or another XLA version)
the float32 arithmetic may round differently, and one differing frequency
table desynchronises the stream: the checksum then refuses the result. A
file never decodes to wrong images silently: its header holds the format
version, a fingerprint of the parameters, the shape and count of the images,
their conditioning, and a SHA-256 of the images, checked after decoding.
"""

import functools
import hashlib
import struct
import threading

import constriction
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from pixelcnn_jax import conditioning
from pixelcnn_jax.cached_loop import cached_loop
from pixelcnn_jax.errors import UserError
from pixelcnn_jax.model import require_pixelcnn

MAGIC = b"PCNNZ\0"
# 2: the colour-restricted cached loop, whose float32 logits round differently
# from version 1's full-width passes.
VERSION = 2
PRECISION_BITS = 16
_HEADER = struct.Struct("<6sH16s4IBI32sQ")  # magic .. cond_dim, sha256, words
_COND_KINDS = {"none": 0, "labels": 1, "vectors": 2}


class CodecError(UserError):
  """A file that cannot be decoded into the images it was made from."""


def params_fingerprint(variables) -> bytes:
  """16 bytes of SHA-256 over every parameter's path, shape and bytes."""
  digest = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0],
                           key=lambda item: jax.tree_util.keystr(item[0])):
    array = np.asarray(leaf)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str(array.shape).encode())
    digest.update(array.astype(array.dtype.newbyteorder("<")).tobytes())
  return digest.digest()[:16]


def _frequencies(logits_BK):
  probs = jax.nn.softmax(logits_BK.astype(jnp.float32), axis=-1)
  return jnp.floor(probs * (1 << PRECISION_BITS)).astype(jnp.int32) + 1


# The coder of the call in flight. The jitted loop calls it back through
# _dispatch, so that one compilation per model and shape serves every call
# (a callback closed over each call's coder would recompile each time).
_coder = {"step": None}
_coder_lock = threading.Lock()


def _dispatch(freqs_BK, known_B):
  return _coder["step"](freqs_BK, known_B)


@functools.partial(jax.jit, static_argnums=0)
def _coding_loop(model, variables, canvas, h):
  def choose(logits_BK, t, known_B, _):
    del t
    return io_callback(_dispatch, jax.ShapeDtypeStruct(known_B.shape, jnp.uint8),
                       _frequencies(logits_BK), known_B, ordered=True)
  return cached_loop(model, variables, canvas, h, choose)


def _run(model, variables, canvas, h, host_step):
  """The cached loop on one device, with host_step(freqs [B, K], known [B]) ->
  values [B] as the choice at every sub-pixel."""
  device = jax.devices()[0]
  canvas, variables = jax.device_put((canvas, variables), device)
  h = None if h is None else jax.device_put(h, device)
  with _coder_lock:
    _coder["step"] = host_step
    try:
      return np.asarray(_coding_loop(model, variables, canvas, h))
    finally:
      _coder["step"] = None


def _condition(model, h, num: int):
  """(kind, h as an array or None), checked against the model."""
  if model.conditioning == "none":
    if h is not None:
      raise CodecError("this model is unconditional; do not pass h")
    return "none", None
  if h is None:
    raise CodecError(f"this model has conditioning={model.conditioning!r}; pass h")
  h = np.asarray(h)
  if model.num_classes > 0:
    try:
      conditioning.check_labels(h, model.num_classes, "h")
    except ValueError as e:
      raise CodecError(str(e)) from e
    return "labels", h.astype(np.int32).reshape(num)
  if h.shape != (num, model.cond_dim):
    raise CodecError(f"h must be float vectors of shape ({num}, {model.cond_dim}), "
                     f"got {h.shape}")
  return "vectors", h.astype(np.float32)


def compress(model, variables, images, h=None) -> bytes:
  """The bytes of a file that decompress() turns back into `images`
  (uint8 [N, H, W, C] at model.image_size), given the same model."""
  require_pixelcnn(model, "pj.compress")
  images = np.asarray(images)
  shape = (*model.image_size, model.channels)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape:
    raise CodecError(f"images must be uint8 [N, {', '.join(map(str, shape))}], got "
                     f"{images.dtype} {images.shape}")
  kind, h = _condition(model, h, len(images))
  encoder = constriction.stream.queue.RangeEncoder()
  family = constriction.stream.model.Categorical(perfect=False)

  def encode(freqs_BK, known_B):
    encoder.encode(np.asarray(known_B, np.int32), family,
                   np.asarray(freqs_BK, np.float64))
    return known_B

  _run(model, variables, images, h, encode)
  payload = encoder.get_compressed()
  cond_dim = 0 if h is None or kind == "labels" else h.shape[1]
  header = _HEADER.pack(MAGIC, VERSION, params_fingerprint(variables), len(images),
                        *shape, _COND_KINDS[kind], cond_dim,
                        hashlib.sha256(images.tobytes()).digest(), len(payload))
  cond = b"" if h is None else h.tobytes()
  return header + cond + payload.astype("<u4").tobytes()


def read_header(data: bytes) -> dict:
  """The header of a compressed file, and where its parts are."""
  if len(data) < _HEADER.size or not data.startswith(MAGIC):
    raise CodecError("not a pixelcnn-jax compressed file (or truncated before its "
                     "header ends)")
  magic, version, fingerprint, n, height, width, channels, kind, cond_dim, digest, \
      words = _HEADER.unpack_from(data)
  if version != VERSION:
    raise CodecError(f"format version {version}; this pixelcnn-jax reads {VERSION}")
  kinds = {v: k for k, v in _COND_KINDS.items()}
  if kind not in kinds:
    raise CodecError(f"corrupt header: conditioning kind {kind}")
  cond_bytes = {"none": 0, "labels": 4 * n, "vectors": 4 * n * cond_dim}[kinds[kind]]
  expected = _HEADER.size + cond_bytes + 4 * words
  if len(data) != expected:
    raise CodecError(f"the file holds {len(data)} bytes but its header announces "
                     f"{expected}: truncated or padded")
  return {"fingerprint": fingerprint, "shape": (n, height, width, channels),
          "cond": kinds[kind], "cond_dim": cond_dim, "sha256": digest,
          "cond_at": _HEADER.size, "payload_at": _HEADER.size + cond_bytes}


def stored_condition(data: bytes):
  """The labels or vectors stored in a file, or None for an unconditional model."""
  head = read_header(data)
  n, dim = head["shape"][0], head["cond_dim"]
  if head["cond"] == "labels":
    return np.frombuffer(data, "<i4", n, head["cond_at"]).astype(np.int32)
  if head["cond"] == "vectors":
    return np.frombuffer(data, "<f4", n * dim, head["cond_at"]).reshape(n, dim).astype(
        np.float32)
  return None


def decompress(model, variables, data: bytes, h=None) -> np.ndarray:
  """The uint8 images of a file made by compress() with this model. `h`, if
  given, must equal the conditioning stored in the file."""
  require_pixelcnn(model, "pj.decompress")
  head = read_header(data)
  if head["fingerprint"] != params_fingerprint(variables):
    raise CodecError("this file was compressed with a different model (its parameter "
                     "fingerprint does not match)")
  n, height, width, channels = head["shape"]
  if (height, width, channels) != (*model.image_size, model.channels):
    raise CodecError(f"the file holds {height}x{width}x{channels} images; the model "
                     f"makes {model.image_size[0]}x{model.image_size[1]}x"
                     f"{model.channels}")
  stored = stored_condition(data)
  if h is not None and (stored is None or not np.array_equal(np.asarray(h), stored)):
    raise CodecError("the h passed differs from the conditioning stored in the file")
  kind, stored = _condition(model, stored, n)
  payload = np.frombuffer(data, "<u4", offset=head["payload_at"]).astype(np.uint32)
  decoder = constriction.stream.queue.RangeDecoder(payload)
  family = constriction.stream.model.Categorical(perfect=False)

  def decode(freqs_BK, known_B):
    del known_B
    return decoder.decode(family, np.asarray(freqs_BK, np.float64)).astype(np.uint8)

  images = _run(model, variables, np.zeros(head["shape"], np.uint8), stored, decode)
  if hashlib.sha256(images.tobytes()).digest() != head["sha256"]:
    raise CodecError("corrupt file: the decoded images fail their checksum")
  return images


def bits_per_subpixel(data: bytes) -> float:
  """Bits written per sub-pixel, header included."""
  n, height, width, channels = read_header(data)["shape"]
  return 8.0 * len(data) / (n * height * width * channels)
