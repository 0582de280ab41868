"""The daemon: runs the assistant that `assembly.Assembly` builds from the config, talks to
systemd, handles signals, reloads and reports health.

systemd (Type=notify) is told READY=1 only once every model is loaded and the pipeline runs,
STATUS= follows the assistant's state and says which part fails ("listening; speaker missing,
retrying"), and WATCHDOG=1 is sent from a task on the core loop: if the loop hangs, the pings
stop and systemd restarts the service. SIGTERM ends the current reply at once and exits
cleanly.

A reload (SIGHUP, or `edge-assistant reload` through the status socket) reads and checks the
config first: a bad one is reported (STATUS=, the config's health, the reload's outcome) and
the service goes on as it was. A good one is announced with RELOADING=1, the models and devices
are rebuilt (the conversation starts afresh) and READY=1 says it is done. The MQTT connection is
kept unless [mqtt] or the device id changed: Home Assistant does not see the device go offline.
The health of every part (`health.Health`) outlives reloads and goes to STATUS=, the retained
MQTT health topic and the status socket (`status.StatusServer`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from . import config as config_module
from . import models
from .assembly import Assembly, AssistantPort, LoadedModels, RunOptions, has_microphone, load_models, model_paths
from .config import Config
from .events import Event, EventType
from .health import CONFIG_FIX, MODEL_FIX, Health
from .limits import LogLimiter
from .status import StatusServer, server_path

log = logging.getLogger(__name__)

# Error events the parts' health reports (once, with the fix): not logged again here.
HEALTH_ERRORS = ("audio_input_failed", "audio_output_failed")
# The same error, again and again, is logged once per this interval.
ERROR_LOG_INTERVAL_S = 300.0


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


def load_checked(config_path: str | None) -> Config:
    """The config, with what `config check` checks: its models are on disk, its files exist.
    Writes nothing (the embedded model is assembled where it is loaded). Raises `ConfigError`
    naming every problem."""
    config = config_module.load(config_path)
    problems = []
    state_dir = config.state_dir()
    for resolve in (
        lambda: models.check_llm(config.llm.model, state_dir),
        lambda: models.resolve_voice(config.tts.voice, state_dir),
        lambda: models.resolve_stt(config.stt.model, state_dir, config.stt.engine),
    ):
        try:
            resolve()
        except models.ModelError as error:
            problems.append(str(error))
    if config.mqtt.password_file and not Path(config.mqtt.password_file).is_file():
        problems.append(f"mqtt.password_file: {config.mqtt.password_file} not found")
    if problems:
        raise config_module.ConfigError("; ".join(problems))
    return config


class Service:
    """One run of the daemon: `await Service(...).run()` returns the exit status."""

    def __init__(self, config_path: str | None, config: Config, options: RunOptions,
                 notifier: SystemdNotifier | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.options = options
        self.notifier = notifier or SystemdNotifier()
        self.stopping = asyncio.Event()
        self.assistant = None
        # The MQTT bridge outlives the runs that use it: see `_connect_broker`.
        self.bridge = None
        self._bridge_for: tuple[Any, str] | None = None  # the [mqtt] and device id it serves
        self.health = Health()
        self.health.listeners.append(self._on_health)
        # What STATUS= starts with: the assistant's state once it runs.
        self.state = "starting"
        self._last_status: str | None = None  # the STATUS= systemd was last told
        self._loop: asyncio.AbstractEventLoop | None = None
        # A checked config to run next (a reload), the outcome of the reload under way, the
        # task checking it, and how the last one went.
        self._next_config: Config | None = None
        self._reload: asyncio.Future[dict[str, Any]] | None = None
        self._reload_check: asyncio.Task | None = None
        self._stop_requested = False
        # The config that ran before a reload, until the new one is ready.
        self._fallback: Config | None = None
        self.last_reload: dict[str, Any] | None = None
        self._errors = LogLimiter(log, ERROR_LOG_INTERVAL_S)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
            return
        log.info("%s: stopping", signal.Signals(signum).name)
        self.notifier.notify("STOPPING=1")
        # A stop outranks a reload asked for earlier: do not load everything again.
        self._stop_requested = True
        self._next_config = None
        self.stopping.set()

    def request_reload(self) -> asyncio.Future[dict[str, Any]]:
        """Reload the config unless a reload is under way (then its outcome is this one's too).
        The future gives the outcome, ``{"ok": bool, "error": str}``, once the service runs
        with the new config, or goes on with the old one."""
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_future()
            self._reload_check = asyncio.create_task(self._check_reload(), name="reload")
        return self._reload

    async def _check_reload(self) -> None:
        """Read and check the config before anything is torn down: a bad one leaves the
        service as it was."""
        log.info("reloading %s", self.config_path or "the config")
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\n"
                             f"STATUS=reloading {self.config_path or 'the config'}")
        self._last_status = None
        try:
            config = await asyncio.to_thread(load_checked, self.config_path)
        except Exception as error:  # ConfigError names the key; anything else is said as it is
            self._reload_failed(str(error) if isinstance(error, config_module.ConfigError)
                                else f"{type(error).__name__}: {error}")
            self._notify_status(ready=True)
            return
        if self._stop_requested:
            self._reload_failed("the service is stopping", report=False)
            return
        self._next_config = config
        self.stopping.set()  # the run ends; `run` starts the next with this config

    def _reload_failed(self, error: str, report: bool = True) -> None:
        if report:
            self.health.failed("config", "reload failed, running the previous config", error, CONFIG_FIX)
        self._reload_done({"ok": False, "error": error})

    def _reload_done(self, outcome: dict[str, Any]) -> None:
        if self._reload is not None and not self._reload.done():
            self._reload.set_result(outcome)
            self.last_reload = {**outcome, "at": round(time.time(), 3)}

    def status(self) -> dict[str, Any]:
        """What the status socket answers."""
        return {"device": self.config.device_id(), "state": self.state, "pid": os.getpid(),
                "config": self.config.source, "reload": self.last_reload, **self.health.to_json()}

    async def _reload_from_socket(self) -> dict[str, Any]:
        return await asyncio.shield(self.request_reload())

    def _on_health(self, health: Health) -> None:
        # Any thread, under the health's lock: the payloads reach the bridge in order.
        bridge = self.bridge
        if bridge is not None:
            bridge.set_health(health.to_json())
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._notify_status)
            except RuntimeError:  # the loop has closed: the service is gone
                pass

    def _notify_status(self, ready: bool = False) -> None:
        """STATUS= to systemd when it changed (several parts may report the same moment),
        with READY=1 when `ready`."""
        status = self.health.status(self.state)
        if ready:
            self.notifier.notify(f"READY=1\nSTATUS={status}")
        elif status != self._last_status:
            self.notifier.notify(f"STATUS={status}")
        self._last_status = status

    def _set_state(self, state: str) -> None:
        self.state = state
        self._notify_status()

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        watchdog = None
        interval = self.notifier.watchdog_interval()
        if interval:
            watchdog = asyncio.create_task(feed_watchdog(self.notifier, interval), name="watchdog")
        status_server = StatusServer(server_path(self.config), self.status, self._reload_from_socket)
        await status_server.start()
        self.health.ok("config", self.config.source)
        try:
            while True:
                try:
                    status = await self._run_once(self.config)
                except Exception as error:
                    if self._fallback is None:
                        raise  # the first start, or the fallback failing too
                    # The new config did not load (a model file that is no model, say): back
                    # to the one that ran.
                    log.error("reload failed while loading; going back to the previous config: %s", error)
                    self._reload_failed(f"{type(error).__name__}: {error}")
                    self.config, self._fallback = self._fallback, None
                    self.stopping.clear()
                    continue
                if self._next_config is None:
                    return status
                self._fallback, self.config, self._next_config = self.config, self._next_config, None
                self.stopping.clear()
        finally:
            self._reload_done({"ok": False, "error": "the service stopped"})
            if self._reload_check is not None:
                self._reload_check.cancel()
                await asyncio.gather(self._reload_check, return_exceptions=True)
            await self._disconnect_broker()
            await status_server.aclose()
            if watchdog is not None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _load(self, config: Config, port: AssistantPort) -> LoadedModels | None:
        """The models, or None if a stop (or reload) came first. The loading thread cannot be
        interrupted, so it is awaited and what it loaded freed: a reload never holds two sets
        of models, and no thread outlives the run."""
        loading = asyncio.ensure_future(
            asyncio.to_thread(load_models, config, has_microphone(config, self.options),
                              paths=model_paths(config), on_llm_event=port.llm_event))
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

    async def _run_once(self, config: Config) -> int:
        self._set_state("loading models")
        self.health.starting("models", "loading")
        bridge = await self._connect_broker(config)
        port = AssistantPort(loop=asyncio.get_running_loop())
        loaded: LoadedModels | None = None
        try:
            # A model that cannot load ends the service (MQTT says goodbye as `run` ends).
            try:
                loaded = await self._load(config, port)
            except Exception as error:
                self.health.failed("models", "failed to load", f"{type(error).__name__}: {error}", MODEL_FIX)
                raise
            if loaded is None:
                return 0
            self._models_loaded(loaded)
            async with Assembly(config, models=loaded, port=port, bridge=bridge, health=self.health,
                                options=self.options, subscribers=[self._on_event]) as parts:
                self.assistant = assistant = await parts.start_assistant()
                self._ready(config, assistant)
                metrics = None
                if bridge is not None and config.mqtt.metrics_interval_s:
                    source, _ = await parts.sources()
                    metrics = asyncio.create_task(self._publish_metrics(assistant, source), name="metrics")
                try:
                    await self._until_stopped(assistant)
                finally:
                    if metrics is not None:
                        metrics.cancel()
                        await asyncio.gather(metrics, return_exceptions=True)
            return 0
        finally:
            if loaded is not None:
                # Off the loop: the LLM's close waits for a generation to let go of its lock.
                await asyncio.to_thread(loaded.close)

    def _models_loaded(self, loaded: LoadedModels) -> None:
        info = loaded.session.engine.info
        # A speech model that fell back to Whisper was logged once when it failed; status
        # shows it too.
        heard_by = loaded.listener_models
        fallback = heard_by.transcriber.fallback if heard_by is not None else ""
        self.health.ok("models", f"{info.name} ({info.quantization})" + (f"; {fallback}" if fallback else ""))

    def _ready(self, config: Config, assistant: Any) -> None:
        """READY=1 (and the end of a reload) once the assistant runs."""
        self.state = assistant.state
        reloaded, self._fallback = self._fallback is not None, None
        if reloaded:
            # Before READY=1: its STATUS= must not still say an earlier reload failed.
            self.health.ok("config", config.source)
        self._notify_status(ready=True)
        if reloaded:
            self._reload_done({"ok": True, "error": ""})
            log.info("reloaded %s", config.source)
        info = assistant.session.engine.info
        log.info("ready: model %s (%s), device id %s", info.name, info.quantization, config.device_id())

    async def _until_stopped(self, assistant: Any) -> None:
        """Until a stop or reload; with a file for a microphone, until it is heard and the
        last reply spoken."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if self.options.input_wav is not None:
            waits.append(asyncio.ensure_future(assistant.wait_until_done()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _connect_broker(self, config: Config) -> Any:
        """The MQTT bridge for `config`, or None. A reload that leaves [mqtt] and the device id
        as they were keeps the running bridge: Home Assistant never sees the device go offline,
        and commands sent meanwhile wait in its queue for the next run."""
        if self.bridge is not None and self._bridge_for == (config.mqtt, config.device_id()):
            return self.bridge
        await self._disconnect_broker()
        if not config.mqtt.enabled:
            self.health.off("broker", "mqtt.enabled is false")
            return None
        from .broker import health_reporter
        from .mqtt import MqttBridge

        self.health.starting("broker", f"connecting to {config.mqtt.host}:{config.mqtt.port}")
        bridge = MqttBridge(config.mqtt, config.device_id(), asyncio.get_running_loop(),
                            on_connection=health_reporter(self.health, config.mqtt))
        self.bridge, self._bridge_for = bridge, (config.mqtt, config.device_id())
        self.health.announce()  # the bridge's retained health, before it connects
        bridge.start()
        return bridge

    async def _disconnect_broker(self) -> None:
        """Retained `offline`, and a clean disconnect, of the bridge there is."""
        bridge, self.bridge, self._bridge_for = self.bridge, None, None
        if bridge is not None:
            await bridge.aclose()


    def _on_event(self, event: Event) -> None:
        if event.type == EventType.STATE:
            self._set_state(str(event.data.get("state")))
        if event.type == EventType.ERROR:
            code = event.data.get("code")
            if code in HEALTH_ERRORS:
                log.debug("event error %s", event.data)
            else:
                self._errors.log(logging.WARNING, f"{code} {event.data.get('message')}", "event error %s", event.data)
        elif event.type != EventType.TRANSCRIPT_PARTIAL:
            log.info("event %s %s", event.type, event.data)

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
            assistant.emit(Event(EventType.METRICS, data))


def run_service(config_path: str | None, options: RunOptions) -> int:
    config = config_module.load(config_path)
    return asyncio.run(Service(config_path, config, options).run())
