"""`--plot`: the e2e turn of both pipelines as a timeline, one stage per row."""

from __future__ import annotations

from pathlib import Path

from .options import BenchError
from .report import Report

STAGE_ROWS = ("user speech", "listen / STT", "end of turn / draft STT", "LLM generating",
              "TTS synthesizing", "speaker playing")
STAGE_COLORS = ("#9e9e9e", "#5c6bc0", "#8e24aa", "#ef6c00", "#2e7d32", "#c62828")
# The end-of-turn row's transcripts made at pauses (its model calls are STAGE_COLORS[2]).
DRAFT_COLOR = "#ce93d8"
# The STT row until the end of the turn is decided (transcribing after it is STAGE_COLORS[1]).
ENDPOINT_COLOR = "#c5cae9"
# stt.first_pass: the final text, below the fast one in the STT row.
FINAL_TEXT_COLOR = "#1a237e"
# Top to bottom, those the run has.
PANELS = {"streaming": "streaming", "first_pass": "streaming, Moonshine's text first", "sequential": "sequential"}


def check_plotting() -> None:
    """Fail before a long run, not after it, when plots cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'edge-assistant[bench]'")


def write_plot(report: Report, path: str | Path) -> None:
    """Both pipelines' turn, one above the other, each stage on its own row."""
    if not report.timelines:
        raise BenchError("no turn to plot: the e2e section did not run or failed")
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [kind for kind in PANELS if kind in report.timelines]
    figure, axes = plt.subplots(len(kinds), 1, figsize=(11, 2.6 * len(kinds) + 0.8), sharex=True,
                                squeeze=False)
    end = max(report.timelines[kind].total_s for kind in kinds)
    start = min(report.timelines[kind].speech[0] for kind in kinds)
    for axis, kind in zip(axes[:, 0], kinds):
        timeline = report.timelines[kind]
        # (spans, colors, bottom and height within the row)
        rows = (
            [([timeline.speech], STAGE_COLORS[0], -0.35, 0.7)],
            # Until the end of the turn is decided, then transcribing; with a first pass its
            # fast text above, the final one below.
            [([timeline.endpoint, timeline.stt], [ENDPOINT_COLOR, STAGE_COLORS[1]], -0.35, 0.7)]
            if timeline.final_stt is None else
            [([timeline.endpoint], ENDPOINT_COLOR, -0.35, 0.7), ([timeline.stt], STAGE_COLORS[1], 0.0, 0.35),
             ([timeline.final_stt], FINAL_TEXT_COLOR, -0.35, 0.35)],
            # The model's calls above, the transcripts made at pauses below: they overlap.
            [(timeline.turn_end, STAGE_COLORS[2], 0.0, 0.35), (timeline.drafts, DRAFT_COLOR, -0.35, 0.35)],
            [(timeline.llm, STAGE_COLORS[3], -0.35, 0.7)],
            [(timeline.tts, STAGE_COLORS[4], -0.35, 0.7)],
            [(timeline.speaker, STAGE_COLORS[5], -0.35, 0.7)],
        )
        for index, parts in enumerate(rows):
            y = len(STAGE_ROWS) - 1 - index
            for spans, colors, bottom, height in parts:
                bars = [(a, max(b - a, 0.005)) for a, b in spans]
                # White edges keep back-to-back chunks (one per sentence) apart.
                axis.broken_barh(bars, (y + bottom, height), facecolors=colors, edgecolor="white",
                                 linewidth=0.8)
        for (a, b), label in zip((timeline.endpoint, timeline.stt), ("end of turn", "STT")):
            if b - a > 0.07 * (end - start):
                axis.text((a + b) / 2, len(STAGE_ROWS) - 2, label, ha="center", va="center", fontsize=8)
        axis.set_yticks(range(len(STAGE_ROWS)), list(reversed(STAGE_ROWS)))
        axis.axvline(0.0, color="black", linewidth=1)
        axis.axvline(timeline.ttfa_s, color=STAGE_COLORS[-1], linestyle="--", linewidth=1)
        axis.set_title(f"{PANELS[kind]}: first audio {timeline.ttfa_s:.2f} s after the end of speech, "
                       f"turn over at {timeline.total_s:.2f} s", fontsize=10, loc="left")
        axis.set_xlim(start - 0.2, end + 0.3)
        axis.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds from the end of the user's speech\n(listen: light = until the end "
                           "of the turn is decided, dark = transcribing after it, with a first pass top = "
                           "Moonshine, bottom = Whisper; end of turn: top = Smart Turn, bottom = "
                           "transcribing at a pause)", fontsize=9)
    values = report.values
    reply = str(values.get("e2e.reply", ""))
    reply = reply if len(reply) <= 70 else reply[:69].rstrip() + "…"
    figure.suptitle(
        f"One spoken turn: \"{values.get('e2e.question', '')}\" -> \"{reply}\" "
        f"({values.get('e2e.reply_sentences', '?')} sentence(s))\n"
        f"{values.get('models.llm_name', '')} ({values.get('models.llm_quantization', '')}) on "
        f"{values.get('machine.cpu', '')}, load {values.get('machine.load_avg_start', '')}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
