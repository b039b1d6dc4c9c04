"""Prometheus metrics of the classify worker and of the refine worker (tier 2), each on one
registry per process."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from distillery.errors import ConfigError


class ClassifyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("distillery_events_in_total", "Input events read", ["task"],
                                 registry=r)
        self.decided = Counter("distillery_decided_by_student_total",
                               "Events decided by the student", ["task"], registry=r)
        self.deferred = Counter("distillery_deferred_to_teacher_total",
                                "Events sent to the teacher, by reason", ["task", "reason"],
                                registry=r)
        self.dead = Counter("distillery_dead_lettered_total", "Events dead-lettered, by reason",
                            ["task", "reason"], registry=r)
        self.redactions = Counter("distillery_redactions_total",
                                  "Personal data replaced in input texts, by kind (email, "
                                  "phone, card, iban, ip, url)", ["task", "kind"], registry=r)
        self.batch_size = Histogram("distillery_batch_size", "Events per micro-batch", ["task"],
                                    buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096),
                                    registry=r)
        self.inference = Histogram("distillery_inference_seconds",
                                   "Student inference time per batch", ["task"], registry=r,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1, 0.25, 1.0))
        self.lag = Gauge("distillery_consumer_lag", "Messages behind the high watermark",
                         ["topic", "partition"], registry=r)
        self.model = Gauge("distillery_model_version_info", "The model version serving a task",
                           ["task", "version"], registry=r)
        self.swaps_rejected = Counter("distillery_model_rejected_total",
                                      "Model announcements refused", ["task"], registry=r)

        self._serving: dict[str, str] = {}

    def serving(self, task: str, version: str) -> None:
        """Show one serving version per task (the gauge is 1 for it)."""
        self._serving[task] = version
        self.model.clear()
        for name, current in self._serving.items():
            self.model.labels(task=name, version=current).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RefineMetrics:
    """The refine worker's metrics for one task (``distillery_refine_*``): items in, decided by
    tier 2, sent on to the teacher (by the request's reason), forwarded without tier-2
    scores (by cause: ``no_model`` yet, or ``tier2_failed`` on the batch), batch latency and
    the tier-2 version serving."""

    def __init__(self, task: str) -> None:
        self.registry = r = CollectorRegistry()
        self.task = task
        t = ["task"]
        self.items_in = Counter("distillery_refine_items_in_total",
                                "Teacher requests read from <task>.refine", t,
                                registry=r).labels(task)
        self.decided = Counter("distillery_refine_decided_total",
                               "Items decided by tier 2", t, registry=r).labels(task)
        self.forwarded = Counter("distillery_refine_forwarded_total",
                                 "Requests sent on to <task>.teacher, by reason "
                                 "(low_confidence, critical, audit, ...)", ["task", "reason"],
                                 registry=r)
        self.unscored = Counter("distillery_refine_unscored_total",
                                "Items forwarded without tier-2 scores, by cause (no_model, "
                                "tier2_failed)", ["task", "cause"], registry=r)
        self.dead = Counter("distillery_refine_dead_lettered_total",
                            "Records dead-lettered, by reason", ["task", "reason"], registry=r)
        self.batch_size = Histogram("distillery_refine_batch_size", "Items per micro-batch", t,
                                    buckets=(1, 4, 16, 64, 128, 256, 512, 1024),
                                    registry=r).labels(task)
        self.inference = Histogram("distillery_refine_inference_seconds",
                                   "Tier-2 scoring time per batch (encoder and head)", t,
                                   buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1.0, 2.5, 5.0, 10.0), registry=r).labels(task)
        self.batch_seconds = Histogram("distillery_refine_batch_seconds",
                                       "One batch from fetched to committed (scoring and sends)",
                                       t, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                   1.0, 2.5, 5.0, 10.0, 30.0),
                                       registry=r).labels(task)
        self.lag = Gauge("distillery_refine_consumer_lag", "Messages behind the high watermark",
                         ["topic", "partition"], registry=r)
        self.model = Gauge("distillery_refine_model_version_info",
                           "The tier-2 version serving a task (1 for it)", t + ["version"],
                           registry=r)
        self.swaps_rejected = Counter("distillery_refine_model_rejected_total",
                                      "Tier-2 announcements refused", t, registry=r).labels(task)
        self.server: Any = None

    def serving(self, version: str) -> None:
        self.model.clear()
        self.model.labels(task=self.task, version=version).set(1)

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on ``port`` (0: do not); a ``ConfigError`` if it is taken."""
        if port:
            try:
                self.server, _ = start_http_server(port, registry=self.registry)
            except OSError as exc:
                raise ConfigError(f"refine worker for {self.task}: cannot serve /metrics on "
                                  f"port {port} ({exc.strerror or exc}); choose another with "
                                  "--metrics-port or DISTILLERY_METRICS_PORT (0: off)") from exc

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 if absent), for tests and the worker's last log line."""
        found = self.registry.get_sample_value(name, {"task": self.task, **labels})
        return float(found or 0.0)

    def summary(self) -> dict[str, float]:
        """Totals by outcome, for the log."""
        out: dict[str, float] = {}
        for family in self.registry.collect():
            if family.type != "counter":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    extra = [v for k, v in sample.labels.items() if k != "task"]
                    name = sample.name.removeprefix("distillery_refine_").removesuffix("_total")
                    out["/".join([name, *extra])] = sample.value
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)
