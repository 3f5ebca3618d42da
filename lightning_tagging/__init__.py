"""lightning_tagging: music audio auto-tagging experiments on PyTorch Lightning."""

__version__ = "0.1.0"
