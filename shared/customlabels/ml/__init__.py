"""Machine learning: pretrained weights, models, training and evaluation code."""
