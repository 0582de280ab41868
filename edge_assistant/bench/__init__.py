"""`edge-assistant bench`: what a person feels (latency) and what the device can afford (CPU,
memory), measured on the configured models and written so that runs can be compared.

Sections, each runnable alone::

    llm       tokens/s (generation and prompt) and time to first token, our engine against
              plain llama-cpp-python on the same `Llama`, alternating runs       (llm.py)
    kv_reuse  prompt evaluation of a second turn with the KV cache reused, against cold
    stt       real-time factor and end-of-speech-to-text latency per engine     (speech.py)
    tts       real-time factor and time to the first audio of a sentence
    wake      CPU seconds per second of audio of the listening front end
    idle      CPU of the whole daemon (a subprocess) while it waits for the wake word (daemon.py)
    e2e       time to first audio of a spoken question, streaming pipeline against the
              sequential way (transcribe, generate everything, synthesize everything) (e2e.py)
    barge_in  time from the wake word, spoken over a reply, to the speaker falling silent
    memory    RSS of a fresh process with every model loaded, and over many turns (daemon.py)

Every timed figure is a median over `runs` repetitions, with `.min` and `.max` beside it.
Results are one flat dict of dotted names (``llm.engine_tokens_per_s``, report.py), printed as
a table and written as JSON; a section that cannot run on this setup is reported as skipped,
with why. runner.py runs the sections and judges the figures against the targets.
"""

from .options import (
    DEFAULT_QUESTION, DEFAULT_RUNS, QUICK_RUNS, SECTIONS, BenchError, BenchOptions, SectionSkipped,
)
from .plot import check_plotting, write_plot
from .report import TARGETS, Report, Target, format_table, write_json
from .runner import judge, run

__all__ = [
    "DEFAULT_QUESTION", "DEFAULT_RUNS", "QUICK_RUNS", "SECTIONS", "TARGETS",
    "BenchError", "BenchOptions", "Report", "SectionSkipped", "Target",
    "check_plotting", "format_table", "judge", "run", "write_json", "write_plot",
]
