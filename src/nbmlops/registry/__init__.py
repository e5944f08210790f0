"""Registry: the MLflow store, promotion gates, champion moves and model cards
(`nbmlops-models`)."""
