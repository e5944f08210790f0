"""The service's Prometheus metrics (`GET /metrics`), in a registry of its own."""

from __future__ import annotations

from .feedback import STATUSES
from .rendezvous import ModelSet

#: The latency histograms' buckets, in seconds.
LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                   0.2, 0.5, 1.0)  # fmt: skip


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("nbmlops_requests", "Requests by outcome", ["outcome"], registry=r)
        self.labels = Counter("nbmlops_labels", "Labels sent to /feedback, by what became of "
                              "them", ["status"], registry=r)  # fmt: skip
        for status in STATUSES:
            self.labels.labels(status)
        self.records = Counter("nbmlops_records", "Records answered", registry=r)
        self.answers = Counter("nbmlops_answers", "Answers by the role and version that gave them",
                               ["role", "version"], registry=r)  # fmt: skip
        self.fallbacks = Counter("nbmlops_fallbacks", "Answers from the fallback, by cause",
                                 ["cause"], registry=r)  # fmt: skip
        self.latency = Histogram("nbmlops_request_seconds", "Time to answer a request",
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.model_latency = Histogram("nbmlops_model_seconds", "Time of the answering model",
                                       ["role"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.shadow_latency = Histogram("nbmlops_shadow_seconds", "Time of each shadow model",
                                        ["alias"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.shadow_errors = Counter("nbmlops_shadow_errors", "Shadow models that failed",
                                     ["alias"], registry=r)  # fmt: skip
        self.shadow_dropped = Counter("nbmlops_shadow_dropped",
                                      "Requests not handed to the shadow process (it was behind)",
                                      registry=r)  # fmt: skip
        self.shadow_restarts = Counter("nbmlops_shadow_restarts",
                                       "Shadow and archive processes restarted, by cause",
                                       ["cause"], registry=r)  # fmt: skip
        self.archived = Counter("nbmlops_archived_records", "Records written to the archive's "
                                "disk (survive a kill of the service)", registry=r)  # fmt: skip
        self.archive_dropped = Counter("nbmlops_archive_dropped_records",
                                       "Records answered but not archived", registry=r)  # fmt: skip
        self.archive_dead_letter = Counter("nbmlops_archive_dead_letter_records",
                                           "Archived records Parquet could not hold, kept in "
                                           "dead-letter.jsonl", registry=r)  # fmt: skip
        self.archive_recovered = Counter("nbmlops_archive_recovered_records",
                                         "Records of segments left by an earlier process, "
                                         "compacted at start", registry=r)  # fmt: skip
        self.archive_files = Counter("nbmlops_archive_files", "Archive files written", registry=r)
        self.archive_backlog = Gauge("nbmlops_archive_backlog_bytes",
                                     "Bytes of requests waiting to be archived",
                                     registry=r)  # fmt: skip
        self.swaps = Counter("nbmlops_model_swaps", "Model sets swapped in", registry=r)
        self.registry_errors = Counter("nbmlops_registry_errors", "Failed registry reads",
                                       registry=r)  # fmt: skip
        self.version = Gauge("nbmlops_model_version", "Version serving each role",
                             ["role"], registry=r)  # fmt: skip
        self.breaker_open = Gauge("nbmlops_breaker_open", "1 while the champion is skipped",
                                  registry=r)  # fmt: skip
        self.canary_misses = Counter("nbmlops_canary_misses", "Records the canary was to "
                                     "answer and had no answer for in time (or failed): the "
                                     "champion answered", registry=r)  # fmt: skip
        self.canary_share = Gauge("nbmlops_canary_share", "The share of records routed to the "
                                  "experiment's canary (0 after a rollback)",
                                  registry=r)  # fmt: skip

    def swapped(self, models: ModelSet) -> None:
        self.swaps.inc()
        for role, version in models.versions().items():
            self.version.labels(role).set(float(version) if version else 0)

    def take(self, report: dict) -> None:
        self.archived.inc(report["written"])
        self.archive_dropped.inc(report["dropped"])
        self.archive_dead_letter.inc(report["dead_letter"])
        self.archive_recovered.inc(report["recovered"])
        self.archive_files.inc(report["files"])
        for alias, _version, ms, ok in report["shadow"]:
            self.shadow_latency.labels(alias).observe(ms / 1000)
            if not ok:
                self.shadow_errors.labels(alias).inc()
