"""The offline side: the nightly job that loads the shop's logs and builds what serving reads."""

from training.dataset import Dataset, build_dataset

__all__ = ["Dataset", "build_dataset"]
