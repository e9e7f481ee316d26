"""Project versions: training jobs, checkpoints, model artifacts."""
from services.training.service import TrainingService

__all__ = ["TrainingService"]
