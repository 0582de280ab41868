"""`models pull` through huggingface-hub against a local server that speaks the hub protocol."""

import io
import os
import subprocess
import sys
import zipfile

import pytest

from edge_assistant import models
from tests.support.hub_server import start_hub


@pytest.fixture
def hub():
    hub, server = start_hub()
    yield hub
    server.shutdown()


def cli(hub, state_dir, *args):
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(state_dir / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        EDGE_ASSISTANT_SERVICE_STATE_DIR=str(state_dir),
    )
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def serve(hub, name, content, corrupt=False):
    model = models.REGISTRY[name]
    for filename in model.files:
        hub.add(model.repo_id, filename, content if filename == model.main_file else b"{}", corrupt)


def test_pull_verifies_and_installs_then_the_model_answers(hub, tmp_path, tiny_gguf):
    name = "qwen2.5-0.5b-instruct-q4"
    serve(hub, name, tiny_gguf.read_bytes())
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 0, result.stderr
    installed = tmp_path / "models" / name / "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert result.stdout.strip() == str(installed)
    assert installed.read_bytes() == tiny_gguf.read_bytes()
    assert any(method == "GET" for method, _, _ in hub.requests)

    listed = cli(hub, tmp_path, "models", "list")
    assert any(line.startswith("* " + name) for line in listed.stdout.splitlines())
    located = cli(hub, tmp_path, "models", "path", name)
    assert located.stdout.strip() == str(installed)

    answer = cli(hub, tmp_path, "ask", "--json", "hello")
    assert answer.returncode == 0  # llm.model is "" here: the embedded default
    env_model = cli(hub, tmp_path, "-c", str(_config(tmp_path, name)), "ask", "--json", "hello")
    assert env_model.returncode == 0, env_model.stderr
    assert '"model": "tiny-chat"' in env_model.stdout


def _config(tmp_path, model_name):
    path = tmp_path / "config.toml"
    path.write_text(f"[llm]\nmodel = '{model_name}'\nmax_tokens = 8\nn_ctx = 512\n")
    return path


def test_corrupted_download_is_rejected_and_deleted(hub, tmp_path, tiny_gguf):
    name = "qwen2.5-0.5b-instruct-q4"
    serve(hub, name, tiny_gguf.read_bytes(), corrupt=True)
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 1
    assert "failed its checksum" in result.stderr and "deleted" in result.stderr
    assert not (tmp_path / "models" / name / "qwen2.5-0.5b-instruct-q4_k_m.gguf").exists()
    assert models.path(name, tmp_path) is None
    # Asking for it now says how to get it, instead of loading a bad file.
    answer = cli(hub, tmp_path, "-c", str(_config(tmp_path, name)), "ask", "hi")
    assert answer.returncode == 1 and "is not pulled yet" in answer.stderr


def test_pinned_checksum_is_enforced_even_when_the_hub_agrees(hub, tmp_path, tiny_gguf):
    # The server's own ETag matches what it serves, but the registry pins another sha256.
    name = "tinyllama-1.1b-chat-q4"
    serve(hub, name, tiny_gguf.read_bytes())
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 1
    assert "9fecc3b3" in result.stderr


def test_dropped_connection_is_retried_and_the_file_completed(hub, tmp_path, tiny_gguf):
    # huggingface-hub resumes from the last whole 10 MB chunk it wrote; this file is smaller,
    # so the retry starts over, and the result must still be complete and verified.
    name = "qwen2.5-0.5b-instruct-q4"
    content = tiny_gguf.read_bytes()
    model = models.REGISTRY[name]
    hub.add(model.repo_id, model.main_file, content, drop_after=len(content) // 2)
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 0, result.stderr
    gets = [path for method, path, _ in hub.requests if method == "GET"]
    assert len(gets) == 2
    assert models.path(name, tmp_path).read_bytes() == content


def test_archive_model_is_extracted_into_a_folder(hub, tmp_path):
    name = "vosk-model-small-en-us"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("vosk-model-small-en-us-0.15/am/final.mdl", b"model")
        archive.writestr("vosk-model-small-en-us-0.15/conf/model.conf", b"conf")
    serve(hub, name, buffer.getvalue())
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 0, result.stderr
    folder = models.path(name, tmp_path)
    assert (folder / "am" / "final.mdl").read_bytes() == b"model"
    assert models.pulled_vosk_model(tmp_path) == folder
    # "auto" and "vosk" prefer the pulled vosk model; "whisper" keeps its own default.
    assert models.resolve_stt("", tmp_path, "auto") == folder == models.resolve_stt("", tmp_path, "vosk")
    assert models.resolve_stt("", tmp_path, "whisper") is None


def test_archive_with_path_traversal_is_refused(hub, tmp_path):
    name = "vosk-model-small-en-us"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.txt", b"x")
    serve(hub, name, buffer.getvalue())
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 1 and "unsafe path" in result.stderr
    # Nothing of the archive was written anywhere: not where "../.." points (the models
    # folder), nor inside the model folder (zipfile itself would strip the "..").
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "models" / name / "model").exists()


def test_unknown_model_and_missing_file_on_the_hub(hub, tmp_path):
    unknown = cli(hub, tmp_path, "models", "pull", "nonsense")
    assert unknown.returncode == 1 and "unknown model 'nonsense'" in unknown.stderr
    missing = cli(hub, tmp_path, "models", "pull", "--quiet", "smollm2-360m-instruct-q8")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr


def test_resolution_rules(tmp_path, tiny_gguf):
    assert models.resolve_llm(str(tiny_gguf), tmp_path) == tiny_gguf
    assert models.resolve_voice("", tmp_path).name == "en_US-joe-medium.onnx"
    assert models.resolve_stt("", tmp_path, "auto") is None
    with pytest.raises(models.ModelError, match="tts.voice: 'qwen2.5-0.5b-instruct-q4' is a llm model"):
        models.resolve_voice("qwen2.5-0.5b-instruct-q4", tmp_path)
    assert models.template_hint("tinyllama-1.1b-chat-q4") == "zephyr"
    assert models.template_hint(str(tiny_gguf)) == "auto"


def test_unreachable_hub_is_one_clear_line(tmp_path):
    class Closed:
        endpoint = "http://127.0.0.1:9"

    result = cli(Closed, tmp_path, "models", "pull", "--quiet", "qwen2.5-0.5b-instruct-q4")
    assert result.returncode == 1
    assert "cannot download" in result.stderr and "Traceback" not in result.stderr


# --- Moonshine: pulled from the hub, or taken out of PyPI wheels by scripts/setup.sh ---------------


def test_moonshine_is_pulled_from_two_repositories_into_one_folder_that_transcribes(hub, tmp_path, make_speech_wav):
    from edge_assistant.audio.wav import read_wav
    from edge_assistant.config import SttConfig
    from edge_assistant.hearing.stt import MoonshineTranscriber, create_transcriber, select_engine

    name = "moonshine-tiny-en"
    model = models.REGISTRY[name]
    embedded = models.embedded_moonshine_path()
    # The hub's float .onnx files stand in as the embedded .ort ones (the loader tells them apart).
    contents = {model.files[0]: (embedded / "encoder_model.ort").read_bytes(),
                model.files[1]: (embedded / "decoder_model_merged.ort").read_bytes(),
                "tokenizer.json": (embedded / "tokenizer.json").read_bytes()}
    for filename, content in contents.items():
        hub.add(model.repo_of(filename), filename, content)
    result = cli(hub, tmp_path, "models", "pull", "--quiet", name)
    assert result.returncode == 0, result.stderr
    requested = {path for method, path, _ in hub.requests if method == "GET"}
    assert any(path.startswith("/UsefulSensors/moonshine-tiny/") for path in requested)
    assert any(path.startswith("/UsefulSensors/moonshine/") for path in requested)

    folder = models.resolve_stt(name, tmp_path, "auto")
    assert folder == models.path(name, tmp_path) and folder.is_dir()
    assert select_engine(SttConfig(model=name), folder) == "moonshine"
    transcriber = create_transcriber(SttConfig(model=name), model_path=folder)
    assert isinstance(transcriber, MoonshineTranscriber)
    heard = transcriber.transcribe(read_wav(make_speech_wav("Turn on the kitchen lights."))).text
    transcriber.close()
    assert "kitchen" in heard.lower() and "lights" in heard.lower()


def _wheels(tmp_path, change=None):
    embedded = models.embedded_moonshine_path()
    paths = []
    for wheel_name, prefix in (("moonshine_voice.whl", "moonshine_voice/"), ("moonshine_onnx.whl", "moonshine_onnx/")):
        path = tmp_path / wheel_name
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(prefix + "__init__.py", "")
            for member, filename, _sha256 in models.MOONSHINE_WHEEL_FILES:
                if member.startswith(prefix):
                    content = (embedded / filename).read_bytes()
                    wheel.writestr(member, change(filename, content) if change else content)
        paths.append(path)
    return paths


def test_moonshine_is_taken_out_of_its_wheels_and_checked(tmp_path):
    share = tmp_path / "share"
    with pytest.raises(models.ModelError, match="encoder_model.ort is missing.*install-moonshine-model.sh"):
        models.embedded_moonshine_path(share)
    folder = models.install_moonshine_from_wheels(_wheels(tmp_path), share)
    assert folder == models.embedded_moonshine_path(share, verify=True) == share / models.MOONSHINE_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["decoder_model_merged.ort", "encoder_model.ort", "tokenizer.json"]

    # A file changed on disk since: only the check that setup makes notices (it installs again).
    (folder / "tokenizer.json").write_text("{}")
    assert models.embedded_moonshine_path(share) == folder
    with pytest.raises(models.ModelError, match="tokenizer.json failed its checksum"):
        models.embedded_moonshine_path(share, verify=True)


def test_a_tampered_or_incomplete_wheel_installs_nothing(tmp_path):
    share = tmp_path / "share"
    tampered = _wheels(tmp_path, lambda name, content: content + b"x" if name == "encoder_model.ort" else content)
    with pytest.raises(models.ModelError, match="encoder_model.ort failed its checksum"):
        models.install_moonshine_from_wheels(tampered, share)
    with pytest.raises(models.ModelError, match="no moonshine_onnx/assets/tokenizer.json"):
        models.install_moonshine_from_wheels(_wheels(tmp_path)[:1], share)
    assert not share.exists()
