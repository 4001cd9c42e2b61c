"""monai-mammo: MONAI bundles and a plugin registry for weakly supervised lesion detection,
classification and segmentation in mammograms and chest X-rays."""

__version__ = "0.1.0"
