"""Fixtures for the LLM tests: tiny random-weight GGUFs written here, and the shipped Gemma 270M.

The tiny model is a real llama-architecture GGUF (2 layers, 64 wide) with an SPM vocabulary of a
few hundred tokens: byte fallback, `<s>`/`</s>`, and `<|im_start|>`/`<|im_end|>` as control
tokens. llama.cpp loads and runs it in milliseconds, so prompt, token, trimming and cancel tests
are exact and fast. Its answers are gibberish by design.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest

TINY_WORDS = (
    "the a an is of to and in what how who capital France Paris weather like today for picnic "
    "hello hi yes no it you I be are was on at with this that there sun rain cold warm day "
    "question answer user assistant system im start end It sunny Bring hat"
).split()

CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>")


def tiny_vocabulary(user_defined: tuple[str, ...] = ()) -> tuple[list[str], list[float], list[int]]:
    import gguf

    token_type = gguf.TokenType
    tokens: list[str] = ["<unk>", "<s>", "</s>", *CONTROL_TOKENS]
    types: list[int] = [
        token_type.UNKNOWN,
        token_type.CONTROL,
        token_type.CONTROL,
        *[token_type.CONTROL] * len(CONTROL_TOKENS),
    ]
    tokens += list(user_defined)
    types += [token_type.USER_DEFINED] * len(user_defined)
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [token_type.BYTE] * 256
    pieces: list[str] = ["▁"]
    pieces += list(string.ascii_letters + string.digits + string.punctuation)
    pieces += ["▁" + word for word in TINY_WORDS]
    pieces += ["im", "_", "start", "end", "|>", "<|"]
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(token_type.NORMAL)
    # SPM merges prefer higher scores: longer pieces win, as in a trained vocabulary.
    scores = [0.0 if t != token_type.NORMAL else float(len(tok)) for tok, t in zip(tokens, types)]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(
    path: Path,
    *,
    chat_template: str | None = None,
    name: str = "tiny-chat",
    n_embd: int = 64,
    n_layer: int = 2,
    context_length: int = 4096,
    seed: int = 0,
    add_bos: bool = True,
    user_defined: tuple[str, ...] = (),
    script: tuple[str, ...] = (),
) -> Path:
    """Write the model. With a `script` (token texts), the weights make greedy decoding recite
    the script in a loop, starting after the prompt's last token (a newline), so tests get
    real sentences from a real GGUF."""
    import gguf

    tokens, scores, types = tiny_vocabulary(user_defined)
    n_vocab = len(tokens)
    n_head = 4
    n_ff = 2 * n_embd
    rng = np.random.default_rng(seed)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weight(*shape: int) -> np.ndarray:
        return rng.normal(0.0, 0.08, size=shape).astype(np.float32)

    def layer_weight(*shape: int) -> np.ndarray:
        return weight(*shape) * layer_scale

    embeddings = rng.normal(0.0, 1.0, size=(n_vocab, n_embd)).astype(np.float32)
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = weight(n_vocab, n_embd)
    # Random byte tokens would make llama-cpp-python hold text back as broken UTF-8; silence
    # them (and the control tokens) so greedy output is plain words.
    output[[i for i, t in enumerate(types) if t != gguf.TokenType.NORMAL]] = 0.0
    layer_scale = 1.0
    if script:
        # The layers add (almost) nothing, so the last hidden state is the last token's
        # embedding; each script token's output row points at its predecessor's embedding.
        layer_scale = 0.0
        ids = [tokens.index(text) for text in script]
        previous = [tokens.index("<0x0A>"), *ids]
        for current, following in zip(previous, ids + ids[:1]):
            unit = embeddings[current] / np.linalg.norm(embeddings[current])
            output[following] += 40.0 * unit
    writer.add_tensor("output.weight", output)
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name_ in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name_}.weight", layer_weight(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", layer_weight(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", layer_weight(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", layer_weight(n_embd, n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny chat model with no chat template in its metadata (auto picks ChatML by name)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_gguf_with_template(tmp_path_factory) -> Path:
    """A tiny model whose GGUF carries a (ChatML-style) Jinja chat template."""
    template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    return write_tiny_gguf(
        tmp_path_factory.mktemp("tiny-template") / "tiny-template.gguf", chat_template=template
    )


@pytest.fixture(scope="session")
def tiny_gguf_user_defined(tmp_path_factory) -> Path:
    """A tiny model with user-defined markup tokens, which llama.cpp matches even in plain text."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("tiny-user-defined") / "tiny-user-defined.gguf",
        user_defined=("<tool_call>", "\n\n"),
    )


SCRIPT = ("▁It", "▁is", "▁sunny", ".", "▁Bring", "▁a", "▁hat", "!")


@pytest.fixture(scope="session")
def scripted_gguf(tmp_path_factory) -> Path:
    """A tiny model that answers every prompt with "It is sunny. Bring a hat!" over and over."""
    return write_tiny_gguf(tmp_path_factory.mktemp("scripted") / "scripted-chat.gguf", script=SCRIPT)


@pytest.fixture(scope="session")
def slow_scripted_gguf(tmp_path_factory) -> Path:
    """The scripted model made wide and deep (32M parameters): it recites at tens of tokens
    per second here, slowly enough that streaming stages visibly overlap."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("slow-scripted") / "slow-scripted-chat.gguf",
        script=SCRIPT, n_embd=512, n_layer=8,
    )


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M base model (Q4_K_M) shipped by a PyPI package."""
    from edge_assistant import models

    return models.embedded_llm_path(tmp_path_factory.mktemp("gemma"))


@pytest.fixture(scope="session")
def gemma_engine(gemma_gguf):
    from edge_assistant.config import LlmConfig
    from edge_assistant.thinking.llama_engine import LlamaEngine

    return LlamaEngine(LlmConfig(n_ctx=1024, max_tokens=24, temperature=0.0, seed=7), gemma_gguf)
