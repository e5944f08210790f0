"""Serving: the online scoring service (`nbmlops-serve`). It imports the base modules, the
registry and the data contract, never training or dataset building."""
