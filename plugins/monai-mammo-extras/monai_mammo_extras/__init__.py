"""monai-mammo-extras: an example third-party plugin package for monai-mammo."""

__version__ = "0.1.0"
