"""Counting XLA compilations through jax's public monitoring events (instead of a jitted
function's private ``_cache_size``): ``with compiles() as done: ...`` then ``len(done)``."""

import contextlib

import jax

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compiles():
    """The backend compilations that happen inside the block, one entry each (a program loaded
    from a persistent compilation cache counts too: the event times compile-or-load)."""
    done: list[float] = []

    def listener(event: str, duration: float, **_: object) -> None:
        if event == BACKEND_COMPILE:
            done.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield done
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
