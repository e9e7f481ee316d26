"""Human review of served predictions, and retraining from it (issue 10)."""
