"""Prometheus's text format read back into samples, for the tests that hold dmpathd's
metrics to the kernel (unit tests on the simulation, lab tests on the real one)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: (sample name, its labels sorted) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly these labels (KeyError if there is none)."""
    return samples[(name, tuple(sorted(labels.items())))]
