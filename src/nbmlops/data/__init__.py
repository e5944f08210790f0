"""Data: from a raw file to a checked, labelled dataset split by time (the ingest, quality
and features tasks)."""
