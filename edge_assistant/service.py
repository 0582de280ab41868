"""The daemon: builds the pipeline from the config, talks to systemd, handles signals.

systemd (Type=notify) is told READY=1 only once every model is loaded and the microphone is
open, STATUS= follows the assistant's state, and WATCHDOG=1 is sent from a task on the core
loop: if the loop hangs, the pings stop and systemd restarts the service. SIGTERM ends the
current reply at once and exits cleanly; SIGHUP reloads the config (the models and devices are
rebuilt, the conversation starts afresh).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import config as config_module
from . import models
from .audio.earcons import earcon
from .audio.microphone import MicrophoneSource
from .audio.speaker import SpeakerSink
from .audio.wav import WavSink, WavSource
from .echo import status_file as echo_status_file
from .echo import with_echo_cancellation
from .respond import Responder
from .timers import (
    HANDLED_INTENTS as TIMER_INTENTS,
    TimerIntentHandler,
    TimerScheduler,
    TimerStore,
    finished_announcement,
    missed_announcement,
)
from .timers import recognize as recognize_timer_intent
from .timers import sentence_data as timer_sentences
from .config import Config
from .events import Event

log = logging.getLogger(__name__)

NO_DEVICE = "none"


class SystemdNotifier:
    """sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET, if there is one."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        self.socket: socket.socket | None = None
        if address:
            # A leading "@" names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    def notify(self, message: str) -> None:
        if self.socket is None:
            return
        try:
            self.socket.sendto(message.encode("utf-8"), self.address)
        except OSError as error:  # systemd going away must not take the service with it
            log.debug("sd_notify %r failed: %s", message, error)

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of WATCHDOG_USEC, if the watchdog is on for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None


async def feed_watchdog(notifier: SystemdNotifier, interval: float) -> None:
    """Ping from the core loop itself: a blocked loop stops the pings."""
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


@dataclass
class RunOptions:
    input_wav: Path | None = None
    output_wav: Path | None = None


def has_microphone(config: Config, options: RunOptions) -> bool:
    # audio.input_device = "none": a speaker-only device, driven over MQTT.
    return options.input_wav is not None or config.audio.input_device != NO_DEVICE


def build_sources(config: Config, options: RunOptions, on_error) -> tuple[Any, Any]:
    source = None
    if options.output_wav is not None:
        sink = WavSink(options.output_wav, volume=config.audio.volume, realtime=True)
    else:
        sink = SpeakerSink(config.audio)
    if options.input_wav is not None:
        source = WavSource(options.input_wav, frame_ms=config.audio.frame_ms, realtime=True)
    elif has_microphone(config, options):
        # A microphone hears the speaker: what it plays is cancelled (a WAV input never does).
        source = with_echo_cancellation(MicrophoneSource(config.audio, on_error=on_error), sink,
                                        config.audio, echo_status_file(config.state_dir()))
    return source, sink


def connect_echo_cancellation(source: Any, wake: Any) -> None:
    """Tell the wake detector whether `source` cancels the assistant's voice: barge-in is then
    at the normal threshold, and the wake word the assistant says itself is known from what it
    played (so it is not taken for a person's)."""
    from .wake import OwnVoiceDetector

    cancels = bool(getattr(source, "cancels_echo", False))
    wake.set_echo_cancelled(cancels)
    wake.own_voice = OwnVoiceDetector(wake.config) if cancels else None
    if cancels:
        source.processor.hear_played = wake.own_voice.hear


@dataclass
class LoadedModels:
    """Everything slow that one run of the daemon loads, and lets go of when it ends."""

    session: Any
    synthesizer: Any
    listener: Any
    earcons: dict[str, Any]

    def close(self) -> None:
        """Free every model (blocking: the LLM waits for its generation to end)."""
        self.session.engine.close()
        self.synthesizer.close()
        if self.listener is not None:
            self.listener.close()


def load_models(config: Config, with_listener: bool = True) -> LoadedModels:
    """Everything slow, run once per start (or reload), off the event loop."""
    from .listener import Listener
    from .llm import load_session
    from .tts import Synthesizer

    state_dir = config.state_dir()
    session = load_session(config)
    try:
        synthesizer = Synthesizer(config.tts, models.resolve_voice(config.tts.voice, state_dir))
        try:
            listener = None
            if with_listener:
                stt_path = models.resolve_stt(config.stt.model, state_dir, config.stt.engine)
                listener = Listener(config, stt_model_path=stt_path)
            earcons = {
                "wake": earcon("wake", config.service.wake_sound),
                "error": earcon("error", config.service.error_sound),
                "announce": earcon("announce"),
                "ring": earcon("ring"),
            }
        except BaseException:
            synthesizer.close()
            raise
    except BaseException:
        session.engine.close()
        raise
    warmed = session.warm()
    if warmed:
        log.info("prompt prefix of %d tokens evaluated ahead of the first question", warmed)
    return LoadedModels(session, synthesizer, listener, earcons)


class Service:
    """One run of the daemon: `await Service(...).run()` returns the exit status."""

    def __init__(self, config_path: str | None, config: Config, options: RunOptions,
                 notifier: SystemdNotifier | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.options = options
        self.notifier = notifier or SystemdNotifier()
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.assistant = None
        self.bridge = None

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: reloading %s", self.config_path or "the config")
            self.reload_requested = True
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
            self.notifier.notify("STOPPING=1")
            # A stop outranks a reload asked for earlier: do not load everything again.
            self.reload_requested = False
        self.stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        watchdog = None
        interval = self.notifier.watchdog_interval()
        if interval:
            watchdog = asyncio.create_task(feed_watchdog(self.notifier, interval), name="watchdog")
        try:
            while True:
                status = await self._run_once()
                if not self.reload_requested:
                    return status
                self.reload_requested = False
                self.stopping.clear()
                try:
                    self.config = config_module.load(self.config_path)
                except config_module.ConfigError as error:
                    # Keep serving with the config that works.
                    log.error("reload failed, keeping the running config: %s", error)
                self.notifier.notify("RELOADING=1\nMONOTONIC_USEC=%d" % (time.monotonic_ns() // 1000))
        finally:
            if watchdog is not None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _load(self, config: Config) -> LoadedModels | None:
        """The models, or None if a stop (or reload) came first. The loading thread cannot be
        interrupted, so it is awaited and what it loaded freed: a reload never holds two sets
        of models, and no thread outlives the run."""
        loading = asyncio.ensure_future(
            asyncio.to_thread(load_models, config, has_microphone(config, self.options))
        )
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({loading, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if not self.stopping.is_set():
            return loading.result()
        log.info("stopping while the models load: waiting for the load to end")
        try:
            loaded = await asyncio.shield(loading)
        except Exception:
            return None  # it failed anyway; we were leaving
        await asyncio.to_thread(loaded.close)
        return None

    async def _run_once(self) -> int:
        from .pipeline import Assistant, TurnRequest

        config = self.config
        self.notifier.notify("STATUS=loading models")
        loop = asyncio.get_running_loop()
        bridge = None
        if config.mqtt.enabled:
            from .mqtt import MqttBridge

            bridge = MqttBridge(config.mqtt, config.device_id(), loop)
            bridge.start()
        self.bridge = bridge
        loaded: LoadedModels | None = None
        source = sink = None
        assistant: Assistant | None = None
        metrics = None
        home = scheduler = None
        try:
            # A model that cannot load ends the service (MQTT says goodbye in `finally`).
            loaded = await self._load(config)
            if loaded is None:
                return 0

            def microphone_error(error: Exception) -> None:
                # Called from the microphone's own thread.
                loop.call_soon_threadsafe(
                    lambda: assistant and assistant.emit(
                        Event("error", {"code": "audio_input_failed", "message": str(error)})
                    )
                )

            source, sink = build_sources(config, self.options, microphone_error)
            if loaded.listener is not None and loaded.listener.wake is not None:
                connect_echo_cancellation(source, loaded.listener.wake)
            session = loaded.session
            home = await self._start_home(config)
            scheduler = self._timer_scheduler(config, lambda: assistant)
            responder = Responder(session, home=home, timers=TimerIntentHandler(scheduler),
                                  recognize_timers=recognize_timer_intent)
            context, _ = responder.tool_context()
            if context:
                # The device list is part of every prompt: into the KV cache before a question.
                await asyncio.to_thread(session.warm, context)
            assistant = Assistant(config, session=session, synthesizer=loaded.synthesizer, sink=sink,
                                  listener=loaded.listener, source=source, bridge=bridge,
                                  earcons=loaded.earcons, responder=responder, timers=scheduler)
            self.assistant = assistant
            assistant.subscribers.append(self._on_event)
            if hasattr(session.engine, "on_event"):
                # The remote backend falling back to the local model (llm.fallback_local) says so
                # from the generating thread; it is an event of the turn being answered.
                session.engine.on_event = lambda event: loop.call_soon_threadsafe(
                    _emit_in_turn, assistant, event
                )
            assistant.start()
            for timer in await scheduler.start():
                assistant.submit(TurnRequest("announce", missed_announcement(timer), "timer", chime="announce"))
            for timer in scheduler.timers():
                # The retained timers list is built from events: the restored ones go on it.
                assistant.emit(Event("timer_updated", scheduler.event_data(timer)))
            self.notifier.notify(f"READY=1\nSTATUS={assistant.state}")
            log.info("ready: model %s (%s), device id %s", session.engine.info.name,
                     session.engine.info.quantization, config.device_id())
            if bridge is not None and config.mqtt.metrics_interval_s:
                metrics = asyncio.create_task(self._publish_metrics(assistant, source), name="metrics")
            waits = [asyncio.ensure_future(self.stopping.wait())]
            # With a file for a microphone, leave once it is heard and the last reply spoken.
            if self.options.input_wav is not None:
                waits.append(asyncio.ensure_future(assistant.wait_until_done()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            return 0
        finally:
            if metrics is not None:
                metrics.cancel()
                await asyncio.gather(metrics, return_exceptions=True)
            if scheduler is not None:
                await scheduler.close()
            if assistant is not None:
                await assistant.stop()
            elif source is not None:
                await source.aclose()
            if home is not None:
                await home.aclose()
            if sink is not None:
                await sink.aclose()
            if loaded is not None:
                # Off the loop: the LLM's close waits for a generation to let go of its lock.
                await asyncio.to_thread(loaded.close)
            if bridge is not None:
                await bridge.aclose()

    @staticmethod
    async def _start_home(config: Config):
        """The home's devices and intents, learned from the broker; None without MQTT."""
        if not (config.home.enabled and config.mqtt.enabled):
            return None
        from .home.assistant import HomeControl

        home = HomeControl(config, allow=TIMER_INTENTS, extra_intents=[timer_sentences()])
        try:
            await home.start()
        except BaseException:
            await home.aclose()
            raise
        return home

    @staticmethod
    def _timer_scheduler(config: Config, assistant) -> TimerScheduler:
        """Timers kept in the state directory; `assistant()` is the one they ring on."""

        def emit(kind: str, data: dict[str, Any]) -> None:
            if assistant() is not None:
                assistant().emit(Event(kind, data))

        def ring(timer, _count: int) -> None:
            if assistant() is not None:
                assistant().ring(finished_announcement(timer))

        return TimerScheduler(TimerStore.in_state_dir(config.state_dir()), config.timers,
                              on_event=emit, on_ring=ring)

    def _on_event(self, event: Event) -> None:
        if event.type == "state":
            self.notifier.notify(f"STATUS={event.data.get('state')}")
        level = logging.WARNING if event.type == "error" else logging.INFO
        if event.type not in ("transcript_partial",):
            log.log(level, "event %s %s", event.type, event.data)

    async def _publish_metrics(self, assistant, source) -> None:
        import psutil

        process = psutil.Process()
        while True:
            await asyncio.sleep(self.config.mqtt.metrics_interval_s)
            data: dict[str, Any] = dict(assistant.counters)
            data["state"] = assistant.state
            data["rss_mb"] = round(process.memory_info().rss / 2**20, 1)
            data["cpu_percent"] = process.cpu_percent(None)
            data["mic_overflows"] = getattr(source, "overflows", 0)
            echo = getattr(source, "status", None)
            if echo is not None:
                data["echo"] = echo.to_json_dict()
            if self.bridge is not None:
                data["mqtt"] = self.bridge.stats
            assistant.emit(Event("metrics", data))


def _emit_in_turn(assistant, event: Event) -> None:
    turn = assistant.active
    if turn is not None:
        event = replace(event, turn_id=turn.request.turn_id, request_id=turn.request.request_id)
    assistant.emit(event)


def run_service(config_path: str | None, options: RunOptions) -> int:
    config = config_module.load(config_path)
    return asyncio.run(Service(config_path, config, options).run())
