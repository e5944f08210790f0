"""Monitoring: batches scored by the served model with a challenger in shadow, and judged
for drift and performance with evidently (the score and monitor tasks)."""
