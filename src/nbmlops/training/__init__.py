"""Training: candidate models built by name, fitted, compared on the held-out window and
registered (the train and evaluate tasks)."""
