"""Evaluation of trained models: metrics, summary files, manifest snapshots."""
from services.evaluation.service import EvaluationService

__all__ = ["EvaluationService"]
