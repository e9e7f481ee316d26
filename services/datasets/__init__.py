"""Datasets, their entries, and the jobs that import, distribute and delete them."""
from services.datasets.service import DatasetsService

__all__ = ["DatasetsService"]
