"""`edge-assistant bench`: what a person feels (latency) and what the device can afford (CPU,
memory), measured on the configured models and written so that runs can be compared.

Sections, each runnable alone, and the module that measures them::

    llm       llm.py     tokens/s (generation and prompt) and time to first token, our engine
                         against plain llama-cpp-python on the same `Llama`, alternating runs
    kv_reuse  llm.py     prompt evaluation of a second turn with the KV cache reused, against cold
    stt       speech.py  real-time factor and end-of-speech-to-text latency per engine
    tts       speech.py  real-time factor and time to the first audio of a sentence
    wake      speech.py  CPU seconds per second of audio of the listening front end
    wake_accuracy  wake_accuracy.py  recall of the wake phrase over every offline voice, clean
                         and in noise, and false accepts per hour, for each wake engine
    idle      daemon.py  CPU of the whole daemon (a subprocess) while it waits for the wake word
    endpoint  endpoint.py  false cut-offs and end-of-turn delay of spoken questions with and
                         without a pause in mid-sentence: silence alone against Smart Turn
    e2e       e2e.py     time to first audio of a spoken question, streaming pipeline against
                         the sequential way (wait out the silence, transcribe, generate all,
                         synthesize all, play)
    barge_in  barge_in.py  time from the wake word, spoken over a reply, to silence
    answers   answers.py   right answers per category of a question set kept in the repo (the
                         clock, timers, the home, sums, knowledge...) and the invented ones
    memory    daemon.py  RSS of a fresh process with every model loaded, and over many turns

Every timed figure is a median over `runs` repetitions, with `.min` and `.max` beside it.
Results are one flat dict of dotted names (``llm.engine_tokens_per_s``), printed as a table and
written as JSON (report.py); a section that cannot run on this setup is reported as skipped, with
why. runner.py runs the chosen sections (options.py) and judges the figures against the targets;
loaded.py holds the models, loaded once for all sections and freed at the end, and builds the
assistant of a measured turn through `assembly.Assembly`, as the daemon builds it (the device's
facts and timers answer what they know), clips.py makes the audio they play, machine.py
describes the machine and the models, plot.py draws the e2e turn.
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
