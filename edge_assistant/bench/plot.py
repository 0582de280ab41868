"""`--plot`: the e2e turn of both pipelines as a timeline, one stage per row."""

from __future__ import annotations

from pathlib import Path

from .options import BenchError
from .report import Report

STAGE_ROWS = ("user speech", "listen / STT", "end of turn / draft STT", "LLM generating",
              "TTS synthesizing", "speaker playing")
STAGE_COLORS = ("#9e9e9e", "#5c6bc0", "#8e24aa", "#ef6c00", "#2e7d32", "#c62828")
# The end-of-turn row: the model's calls dark, the transcripts made at pauses light.
DRAFT_COLOR = "#ce93d8"


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

    kinds = [kind for kind in ("streaming", "sequential") if kind in report.timelines]
    figure, axes = plt.subplots(len(kinds), 1, figsize=(11, 2.6 * len(kinds) + 0.8), sharex=True,
                                squeeze=False)
    end = max(report.timelines[kind].total_s for kind in kinds)
    start = min(report.timelines[kind].speech[0] for kind in kinds)
    for axis, kind in zip(axes[:, 0], kinds):
        timeline = report.timelines[kind]
        rows = (
            [timeline.speech],
            [timeline.endpoint, timeline.stt],
            [*timeline.drafts, *timeline.turn_end],
            timeline.llm,
            timeline.tts,
            timeline.speaker,
        )
        for index, spans in enumerate(rows):
            y = len(STAGE_ROWS) - 1 - index
            bars = [(a, max(b - a, 0.005)) for a, b in spans]
            colors = STAGE_COLORS[index]
            if index == 1:
                # Waiting out the silence, then transcribing.
                colors = ["#c5cae9", STAGE_COLORS[1]]
            elif index == 2:
                colors = [DRAFT_COLOR] * len(timeline.drafts) + [STAGE_COLORS[2]] * len(timeline.turn_end)
            # White edges keep back-to-back chunks (one per sentence) apart.
            axis.broken_barh(bars, (y - 0.35, 0.7), facecolors=colors, edgecolor="white", linewidth=0.8)
        for (a, b), label in zip((timeline.endpoint, timeline.stt), ("end of turn", "STT")):
            if b - a > 0.07 * (end - start):
                axis.text((a + b) / 2, len(STAGE_ROWS) - 2, label, ha="center", va="center", fontsize=8)
        axis.set_yticks(range(len(STAGE_ROWS)), list(reversed(STAGE_ROWS)))
        axis.axvline(0.0, color="black", linewidth=1)
        axis.axvline(timeline.ttfa_s, color=STAGE_COLORS[-1], linestyle="--", linewidth=1)
        axis.set_title(f"{kind}: first audio {timeline.ttfa_s:.2f} s after the end of speech, "
                       f"turn over at {timeline.total_s:.2f} s", fontsize=10, loc="left")
        axis.set_xlim(start - 0.2, end + 0.3)
        axis.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds from the end of the user's speech\n(listen row: light = until the "
                           "end of the turn is decided, dark = transcribing after it; end-of-turn "
                           "row: dark = Smart Turn, light = transcribing at a pause)", fontsize=9)
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
