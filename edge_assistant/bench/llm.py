"""The `llm` section (our engine against plain llama-cpp-python on the same `Llama`) and the
`kv_reuse` section (a second turn's prompt evaluation with the KV cache reused, against cold)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

from ..thinking.llama_engine import sampling_arguments
from .loaded import LoadedModels, llm_settings
from .options import DEFAULT_QUESTION, BenchOptions, SectionSkipped
from .report import Report

KV_FIRST_QUESTION = "What is the capital of France?"
KV_SECOND_QUESTION = "And what is the capital of Italy?"


@dataclass
class _LlmRun:
    ttft_s: float
    decode_s: float
    prompt_tokens: int
    sampled_tokens: int

    @property
    def tokens_per_s(self) -> float:
        # After the first token, each further token is one evaluation and one sampling.
        return (self.sampled_tokens - 1) / self.decode_s

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.ttft_s


def _sampled_tokens(llama, prompt_tokens: int) -> int:
    # Every sampled token but the last was evaluated into the context.
    return llama.n_tokens - prompt_tokens + 1


def _engine_run(engine, prompt) -> _LlmRun:
    from ..thinking.chat import Generation

    engine.llama.reset()  # a cold KV cache: the whole prompt is evaluated
    start = time.perf_counter()
    first = None
    for _piece in engine.generate(prompt, None, Generation()):
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("the model wrote no text to time")
    return _LlmRun(first - start, end - first, len(prompt.tokens),
                   _sampled_tokens(engine.llama, len(prompt.tokens)))


def _raw_run(llama, prompt, settings, max_tokens: int) -> _LlmRun:
    """What a llama-cpp-python user writes: create_completion, streaming, same settings."""
    llama.reset()
    start = time.perf_counter()
    first = None
    for chunk in llama.create_completion(
        prompt=list(prompt.tokens),
        max_tokens=max_tokens,
        **sampling_arguments(settings),
        stop=[],
        stream=True,
    ):
        if first is None and chunk["choices"][0]["text"]:
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("the model wrote no text to time")
    return _LlmRun(first - start, end - first, len(prompt.tokens),
                   _sampled_tokens(llama, len(prompt.tokens)))


def bench_llm(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    session = loaded.session
    engine = session.engine
    wanted = 16 if options.quick else 64
    # The prompt of a real turn, without stop strings: both sides write the same number of
    # tokens, and greedy decoding makes them the same tokens.
    prompt = replace(session.prepare(DEFAULT_QUESTION), stop=())
    with llm_settings(engine, temperature=0.0, max_tokens=wanted, stop=()) as settings:
        warm = _engine_run(engine, prompt)
        tokens = warm.sampled_tokens
        if tokens < 4:
            raise SectionSkipped(f"the model ends its reply after {tokens} tokens; too few to time")
        _raw_run(engine.llama, prompt, settings, tokens)
        ours: list[_LlmRun] = []
        raw: list[_LlmRun] = []
        for index in range(options.runs):
            # Alternating which goes first spreads cache and clock effects over both.
            order = ("ours", "raw") if index % 2 == 0 else ("raw", "ours")
            for side in order:
                if side == "ours":
                    ours.append(_engine_run(engine, prompt))
                else:
                    raw.append(_raw_run(engine.llama, prompt, settings, tokens))
    mismatched = {run.sampled_tokens for run in ours + raw} - {tokens}
    if mismatched:
        report.add("llm.warning", f"token counts differ between runs: {sorted(mismatched | {tokens})}")
    report.add("llm.prompt_tokens", len(prompt.tokens))
    report.add("llm.completion_tokens", tokens)
    ours_tps = report.add_series("llm.engine_tokens_per_s", [r.tokens_per_s for r in ours])
    raw_tps = report.add_series("llm.raw_tokens_per_s", [r.tokens_per_s for r in raw])
    report.add_ratio("llm.ratio", ours_tps, raw_tps)
    ours_pps = report.add_series("llm.engine_prompt_tokens_per_s", [r.prompt_tokens_per_s for r in ours])
    raw_pps = report.add_series("llm.raw_prompt_tokens_per_s", [r.prompt_tokens_per_s for r in raw])
    report.add_ratio("llm.prompt_ratio", ours_pps, raw_pps)
    report.add_series("llm.engine_ttft_s", [r.ttft_s for r in ours])
    report.add_series("llm.raw_ttft_s", [r.ttft_s for r in raw])


def _prompt_eval_s(engine, prompt) -> tuple[float, int]:
    """Seconds from the call to the first sampled token, and the prompt tokens reused."""
    from ..thinking.chat import Generation

    result = Generation()
    with llm_settings(engine, max_tokens=1):
        for _piece in engine.generate(prompt, None, result):
            pass
    return result.timings.prompt_ms / 1000, result.cached_tokens


def bench_kv_reuse(loaded: LoadedModels, report: Report, options: BenchOptions) -> None:
    from ..thinking.chat import Generation, Reply

    session = loaded.session
    engine = session.engine
    reply_tokens = 8 if options.quick else engine.config.max_tokens
    warm, cold, cached, sizes = [], [], [], []
    first_cold, first_warm = [], []
    with llm_settings(engine, temperature=0.0, max_tokens=reply_tokens):
        for _ in range(options.runs):
            # The first question of a conversation, cold and after the daemon's warm-up.
            session.reset()
            engine.llama.reset()
            first = session.prepare(KV_FIRST_QUESTION)
            first_cold.append(_prompt_eval_s(engine, first)[0])
            engine.llama.reset()
            session.warm()
            first_warm.append(_prompt_eval_s(engine, first)[0])
            # Turn one, answered and remembered as the daemon does.
            engine.llama.reset()
            reply = Reply(first, Generation())
            for _sentence in session.sentences(first, None, reply):
                pass
            session.record(KV_FIRST_QUESTION, reply)
            second = session.prepare(KV_SECOND_QUESTION)
            seconds, reused = _prompt_eval_s(engine, second)
            warm.append(seconds)
            cached.append(reused)
            sizes.append(len(second.tokens))
            engine.llama.reset()
            seconds, _ = _prompt_eval_s(engine, second)
            cold.append(seconds)
    session.reset()
    report.add("kv_reuse.prompt_tokens", round(statistics.median(sizes)))
    report.add("kv_reuse.cached_tokens", round(statistics.median(cached)))
    warm_s = report.add_series("kv_reuse.warm_prompt_s", warm)
    cold_s = report.add_series("kv_reuse.cold_prompt_s", cold)
    report.add_ratio("kv_reuse.ratio", warm_s, cold_s)
    first_cold_s = report.add_series("kv_reuse.first_turn_cold_s", first_cold)
    first_warm_s = report.add_series("kv_reuse.first_turn_warm_s", first_warm)
    report.add_ratio("kv_reuse.first_turn_ratio", first_warm_s, first_cold_s)
