"""Prometheus metrics of the classify worker, on one registry per process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.batch_size = Histogram("distillery_batch_size", "Events per micro-batch", ["task"],
                                    buckets=(1, 4, 16, 64, 128, 256, 512, 1024), registry=r)
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
