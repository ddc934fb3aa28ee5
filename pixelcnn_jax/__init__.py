"""pixelcnn-jax: Gated and Conditional PixelCNN in JAX/Flax."""

from pixelcnn_jax import autoencoder, embedding, portraits, sampling
from pixelcnn_jax.checkpoint import load
from pixelcnn_jax.compression import compress, decompress
from pixelcnn_jax.evaluate import image_bits_per_dim
from pixelcnn_jax.likelihood import bits_per_dim
from pixelcnn_jax.model import GatedPixelCNN
from pixelcnn_jax.sampling import sample

__all__ = ["GatedPixelCNN", "autoencoder", "bits_per_dim", "compress", "decompress",
           "embedding", "image_bits_per_dim", "load", "portraits", "sample", "sampling"]
