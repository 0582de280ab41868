"""`Assembly`: the assistant and its parts built one way from a config, for the daemon, `ask`,
`listen`, `say` and every `bench` section that runs the assistant.

    async with Assembly(config, models=loaded, bridge=bridge, health=health) as parts:
        assistant = await parts.start_assistant()

Each part is built when first asked for, once, with what it works with handed to its
constructor, and closed with the assembly in the reverse order of building. What a caller
hands in instead (models loaded once for many assemblies, a WAV source, a recording sink, the
daemon's MQTT bridge, a timer store) is used as it is, and closed by that caller; the source
excepted, which the assistant closes when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any, Callable, Iterable

from ..config import Config
from ..events import Event, EventType
from ..health import Health
from ..timers import SYSTEM_CLOCK, Clock, TimerScheduler, TimerStore, missed_announcement
from .answering import ReadOnlyTimerStore, build_responder, start_home, timer_store
from .devices import NO_DEVICE, RunOptions, build_sources
from .loading import LoadedModels, ModelPaths, new_listener
from .port import AssistantPort, timer_scheduler


class Assembly:
    def __init__(
        self,
        config: Config,
        *,
        models: LoadedModels | None = None,
        port: AssistantPort | None = None,
        source: Any = None,
        own_sound: Any = None,
        sink: Any = None,
        synthesizer: Any = None,
        listener: Any = None,
        bridge: Any = None,
        health: Health | None = None,
        options: RunOptions | None = None,
        hears: bool = True,
        earcons: dict[str, Any] | None = None,
        subscribers: Iterable[Callable[[Event], None]] = (),
        home_client_id: str | None = None,
        reachable_home_only: bool = False,
        timers_store: TimerStore | None = None,
        read_only_timers: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`models`: the caller's, shared by many assemblies (else each model is loaded here
        when first needed, and freed with the assembly);
        `source`, `sink`: instead of the microphone and speaker (or `options`' WAV files),
        both or neither, and `own_sound` what `source` hears of the assistant itself
        (`own_sound_for`; none: nothing it plays is heard); `synthesizer`: instead of the loaded one (bench's timed one);
        `listener`: instead of the one built here (bench's with a first pass), closed by its owner;
        `hears`: False for an assistant without a listener; `earcons`: instead of the
        configured ones ({} for none); `home_client_id`: the home's own MQTT client id, and
        `reachable_home_only` leaves out a home whose broker cannot be reached (a one-off
        command); `timers_store`: instead of the device's, `read_only_timers` for a process
        beside the daemon that owns them."""
        self.config = config
        self.port = port if port is not None else AssistantPort()
        self._closing = contextlib.AsyncExitStack()
        if models is None:
            models = LoadedModels(config, with_listener=hears, on_llm_event=self.port.llm_event)
            # Off the loop: the LLM's close waits for a generation to let go of its lock.
            self._closing.push_async_callback(asyncio.to_thread, models.close)
        self.models = models
        self.paths: ModelPaths = models.paths
        self.bridge = bridge
        self.health = health if health is not None else Health()
        self.options = options if options is not None else RunOptions()
        self.hears = hears
        self.subscribers = list(subscribers)
        self._given = {"source": source, "own_sound": own_sound, "sink": sink, "synthesizer": synthesizer,
                       "listener": listener, "earcons": earcons}
        self._home_client_id = home_client_id
        self._reachable_home_only = reachable_home_only
        self._timers_store = timers_store
        self._read_only_timers = read_only_timers
        self._clock = clock
        self._built: dict[str, Any] = {}

    async def __aenter__(self) -> "Assembly":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what was built here, the last built first."""
        try:
            await self._closing.aclose()
        finally:
            self._built.clear()

    async def _once(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._built:
            self._built[name] = await build()
        return self._built[name]

    # --- the models ---------------------------------------------------------------------------

    async def session(self) -> Any:
        return await asyncio.to_thread(lambda: self.models.session)

    async def synthesizer(self) -> Any:
        if self._given["synthesizer"] is not None:
            return self._given["synthesizer"]
        return await asyncio.to_thread(lambda: self.models.synthesizer)

    async def listener(self) -> Any:
        """The listener (None where the assistant does not hear), built knowing what its
        source hears of the assistant itself, on the speech models loaded (shared with it)."""
        if not self.hears:
            return None
        if self._given["listener"] is not None:
            return self._given["listener"]

        async def build():
            if self._given["source"] is not None and self._given["own_sound"] is None:
                # A source handed in that hears nothing of the assistant (a bench section's
                # room, a file): the models' own listener, warm from earlier turns.
                return await asyncio.to_thread(lambda: self.models.listener)
            models = await asyncio.to_thread(lambda: self.models.listener_models)  # loaded once
            if models is None:  # models loaded for an assistant that does not hear
                return None
            _, _, own_sound = await self._sources()
            listener = await asyncio.to_thread(new_listener, self.config, models, own_sound)
            self._closing.push_async_callback(asyncio.to_thread, listener.close)
            return listener

        return await self._once("listener", build)

    def earcons(self) -> dict[str, Any]:
        return self._given["earcons"] if self._given["earcons"] is not None else self.models.earcons

    # --- the devices --------------------------------------------------------------------------

    async def sources(self) -> tuple[Any, Any]:
        """The source and the sink: those handed in, else the microphone and the speaker (or
        the options' WAV files) reporting to the health."""
        source, sink, _ = await self._sources()
        return source, sink

    async def own_sound(self) -> Any:
        """What the source hears of the assistant itself (`audio.own_sound.OwnSound`)."""
        _, _, own_sound = await self._sources()
        return own_sound

    async def _sources(self) -> tuple[Any, Any, Any]:
        async def build():
            from ..audio.own_sound import AssistantSound
            from ..audio.speaker import SpeakerSink

            source, sink, own_sound = self._given["source"], self._given["sink"], self._given["own_sound"]
            if sink is None:
                built_source, sink, built_own_sound = self._build_sources(microphone=self.hears and source is None)
                self._closing.push_async_callback(sink.aclose)
                if isinstance(sink, SpeakerSink):
                    await self._task(sink.watch(), "speaker-watch")
                if built_source is not None:
                    source, own_sound = built_source, built_own_sound
                    self._closing.push_async_callback(self._close_source, source)
            return source, sink, own_sound if own_sound is not None else AssistantSound()

        return await self._once("sources", build)

    def _build_sources(self, microphone: bool) -> tuple[Any, Any, Any]:
        config, options = self.config, self.options
        if not microphone:
            config = replace(config, audio=replace(config.audio, input_device=NO_DEVICE))
            options = RunOptions(output_wav=options.output_wav)
        return build_sources(config, options, self.health, on_microphone_fault=self.port.microphone_fault)

    async def _close_source(self, source: Any) -> None:
        if "assistant" not in self._built:  # the assistant closes it when it stops
            await source.aclose()

    async def _task(self, work: Any, name: str) -> asyncio.Task:
        task = asyncio.create_task(work, name=name)

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._closing.push_async_callback(cancel)
        return task

    # --- answering ----------------------------------------------------------------------------

    async def home(self) -> Any:
        """The home, started (None without MQTT, or unreachable where only a reachable one
        is wanted)."""
        async def build():
            import logging

            home = await start_home(self.config, client_id=self._home_client_id)
            if home is None:
                return None
            if self._reachable_home_only and not home.connection.connects:
                logging.getLogger(__name__).warning(
                    "home: the MQTT broker %s:%d cannot be reached; answering without devices",
                    self.config.mqtt.host, self.config.mqtt.port)
                await home.aclose()
                return None
            self._closing.push_async_callback(home.aclose)
            return home

        return await self._once("home", build)

    async def timers(self) -> TimerScheduler:
        """The timers, not started (`start` starts them): the device's, ringing on the
        assistant; only read where another process owns them."""
        async def build():
            store = self._timers_store if self._timers_store is not None else timer_store(self.config)
            if self._read_only_timers:
                store = ReadOnlyTimerStore(store.path)
            scheduler = timer_scheduler(self.config, self.port, store=store, clock=self._clock)
            self._closing.push_async_callback(scheduler.close)
            return scheduler

        return await self._once("timers", build)

    async def responder(self) -> Any:
        """Facts, the home, the timers, then the LLM: as the daemon answers."""
        async def build():
            sink = self._built.get("sources", (None, self._given["sink"]))[1]
            config = self.config
            volume = (lambda: sink.volume) if sink is not None else (lambda: config.audio.volume)
            return build_responder(config, await self.session(), home=await self.home(),
                                   scheduler=await self.timers(), read_only_timers=self._read_only_timers,
                                   volume=volume, muted=self.port.muted)

        return await self._once("responder", build)

    # --- the assistant ------------------------------------------------------------------------

    async def assistant(self) -> Any:
        """The assistant, with every part above; not started (`start`)."""
        async def build():
            from ..core import Assistant

            source, sink = await self.sources()
            session = await self.session()
            responder = await self.responder()
            context, _ = responder.tool_context()
            if context:
                # The device list is part of every prompt: into the KV cache before a question.
                await asyncio.to_thread(session.warm, context)
            listener = await self.listener()
            assistant = Assistant(self.config, session=session, synthesizer=await self.synthesizer(),
                                  sink=sink, listener=listener, source=source if listener else None,
                                  bridge=self.bridge, earcons=self.earcons(), responder=responder,
                                  timers=await self.timers(), own_sound=await self.own_sound())
            assistant.subscribers.extend(self.subscribers)
            self.port.connect(assistant)
            self._closing.push_async_callback(assistant.stop)
            # The timers first: nothing rings on an assistant that is stopping.
            self._closing.push_async_callback(self._built["timers"].close)
            return assistant

        return await self._once("assistant", build)

    async def start(self) -> None:
        """Start the assistant (where built) and then the timers (where built): a timer missed
        while the device was off is announced, those restored are published."""
        assistant = self._built.get("assistant")
        if assistant is not None:
            assistant.start()
        scheduler = self._built.get("timers")
        if scheduler is None:
            return
        missed = await scheduler.start()
        if assistant is None:
            return
        from ..core import TurnKind, TurnRequest

        for timer in missed:
            assistant.submit(TurnRequest(TurnKind.ANNOUNCE, missed_announcement(timer), "timer", chime="announce"))
        for timer in scheduler.timers():
            # The retained timers list is built from events: the restored ones go on it.
            assistant.emit(Event(EventType.TIMER_UPDATED, scheduler.event_data(timer)))

    async def start_assistant(self) -> Any:
        """The assistant, built and started (`assistant`, `start`)."""
        assistant = await self.assistant()
        await self.start()
        return assistant
