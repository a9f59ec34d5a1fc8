"""When to try again an assembly step the kernel refused (a map's create, a reload that
adds its paths): pure, so the engine's timers are tested without a clock."""

from __future__ import annotations


def backoff(tries: int, base: float, cap: float) -> float:
    """Seconds before try ``tries + 1`` after ``tries`` failures in a row: ``base``, then
    doubling up to ``cap``. A refusal that lasts (a table the kernel will never take)
    costs one error event per ``cap`` seconds, not one per polling interval; one that
    passes (a busy device, a brief ENOMEM) heals within ``base``."""
    if tries < 1:
        return base
    return float(min(cap, base * 2 ** min(tries - 1, 30)))
