"""The process-wide switches read when a program is traced (JAXCOLLAPSE_SUMS, JAXCOLLAPSE_NATIVE).

They go into the cache keys of jaxcollapse's own compiled programs (an eager fit, a study's program),
so a switch changed between calls traces anew instead of reusing a program traced the other way."""
from __future__ import annotations


def current() -> tuple[str, str]:
    from jaxcollapse.families.em import reductions
    from jaxcollapse.native import build

    return reductions.SUMS, build.MODE
