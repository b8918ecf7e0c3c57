"""vaelab: train, evaluate and explore variational autoencoders on small image data sets."""

__version__ = "0.1.0"
