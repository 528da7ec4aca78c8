"""Prometheus metrics of the service, on a registry of its own (no process-wide globals).

- `ticketsmith_triage_seconds`: latency histogram of every triage (worker or HTTP API, waiting included);
- `ticketsmith_triage_total{outcome}`: auto (every field confident), needs_review, error;
- `ticketsmith_jobs{state}`: the durable store's tickets by state (new, processing, done, needs_review,
  failed, dead), read at scrape time, so it survives restarts and counts every worker on the store;
- `ticketsmith_queue_depth`: tickets waiting (new, or failed and due for a retry);
- `ticketsmith_source_paused{source}`: 1 while a source's circuit breaker holds it paused (an outage,
  rejected credentials), else 0; one per ITSM source, read at scrape time;
- `ticketsmith_model_info`: the model file, taxonomy fingerprint and prompt version being served."""

from collections.abc import Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ticketsmith.runtime.schema import TriageResult

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class _JobsCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        jobs = GaugeMetricFamily("ticketsmith_jobs", "tickets in the job store by state", labels=["state"])
        for state, count in sorted(counts.items()):
            jobs.add_metric([state], count)
        yield jobs
        waiting = counts.get("new", 0) + counts.get("failed", 0)
        yield GaugeMetricFamily("ticketsmith_queue_depth", "tickets waiting to be triaged", value=waiting)


class _PausedCollector(Collector):
    def __init__(self, sources: Collection[str], paused: Callable[[], dict[str, str]]) -> None:
        self.sources, self.paused = sources, paused

    def collect(self) -> Iterator[Metric]:
        paused = self.paused()
        gauge = GaugeMetricFamily(
            "ticketsmith_source_paused", "1 while the source is paused by its circuit breaker", labels=["source"]
        )
        for source in sorted({*self.sources, *paused}):
            gauge.add_metric([source], 1 if source in paused else 0)
        yield gauge


class ServiceMetrics:
    def __init__(
        self,
        job_counts: Callable[[], dict[str, int]],
        model: dict[str, str],
        sources: Collection[str] = (),
        paused: Callable[[], dict[str, str]] = dict,
    ) -> None:
        """`sources`: the ITSM sources served; `paused`: which of them are paused now, and why."""
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "ticketsmith_triage_seconds", "seconds per triage", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.outcomes = Counter("ticketsmith_triage", "triages by outcome", ["outcome"], registry=self.registry)
        Info("ticketsmith_model", "the model being served", registry=self.registry).info(model)
        self.registry.register(_JobsCollector(job_counts))
        self.registry.register(_PausedCollector(sources, paused))

    def observe(self, seconds: float, result: TriageResult | None) -> None:
        """A Triager observer."""
        self.latency.observe(seconds)
        outcome = "error" if result is None else "needs_review" if result.needs_review else "auto"
        self.outcomes.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
