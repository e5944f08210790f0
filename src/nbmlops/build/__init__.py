"""The build itself: the executor Ploomber runs, the lock that keeps one build at a time, and
the inputs a task reads that Ploomber does not track."""
