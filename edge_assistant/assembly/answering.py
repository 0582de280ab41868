"""The parts that answer a request, built one way for the daemon, `edge-assistant ask` and
`bench` (through `Assembly`), so that all three answer alike: what the device knows (facts),
the home with the timer intents merged into its templates, the timers, then the LLM.

    home = await start_home(config)                      # None without MQTT
    responder = build_responder(config, session, home=home, scheduler=scheduler)

`ask` runs beside a daemon that may own the timers: it reads them from the same state file
(`timer_store`) and never writes it (`read_only_timers`), so it can say how long is left but
does not claim to set a timer that nothing would ring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..config import Config
from ..facts import DeviceFacts
from ..respond import TEMPERATURE_INTENT, Responder
from ..timers import HANDLED_INTENTS as TIMER_INTENTS
from ..timers import TimerIntentHandler, TimerStore, Timer
from ..timers import recognize as recognize_timer_intent
from ..timers import sentence_data as timer_sentences

# Timer intents that only read the timers: the ones `ask` may answer.
READING_TIMER_INTENTS = frozenset({"HassTimerStatus", "EdgeAlarmStatus"})
READ_ONLY_TIMERS = ("I can only tell you about timers and alarms here; "
                    "ask the running assistant to set or change them.")


def timer_store(config: Config) -> TimerStore:
    """Where the device keeps its timers and alarms: its own, whatever other devices run on
    this account."""
    return TimerStore.of_device(config)


class ReadOnlyTimerStore(TimerStore):
    """The device's timers, read and never written (another process owns them)."""

    def save(self, timers: Iterable[Timer]) -> None:
        pass


@dataclass(frozen=True)
class _Refusal:
    text: str
    ok: bool = False
    code: str | None = "timer_read_only"
    follow_up: bool = False


class ReadOnlyTimers:
    """Answers what the timers are; refuses, saying why, to change them."""

    def __init__(self, timers: TimerIntentHandler) -> None:
        self.timers = timers

    def handle_intent(self, intent_name: str, slots: dict[str, Any]) -> Any:
        if intent_name in READING_TIMER_INTENTS:
            return self.timers.handle_intent(intent_name, slots)
        return _Refusal(READ_ONLY_TIMERS)


def new_home(config: Config, *, client_id: str | None = None):
    """The home's devices, with the timer intents in its templates; not started."""
    from ..home.assistant import HomeControl

    return HomeControl(config, allow=TIMER_INTENTS | {TEMPERATURE_INTENT}, extra_intents=[timer_sentences()],
                       client_id=client_id)


async def start_home(config: Config, *, client_id: str | None = None):
    """The home (`new_home`), started: connected and its devices learnt; None without MQTT."""
    if not (config.home.enabled and config.mqtt.enabled):
        return None
    home = new_home(config, client_id=client_id)
    try:
        await home.start()
    except BaseException:
        await home.aclose()
        raise
    return home


def build_responder(config: Config, session: Any, *, home: Any = None, scheduler: Any = None,
                    read_only_timers: bool = False,
                    volume: Callable[[], float | None] | None = None,
                    muted: Callable[[], bool | None] | None = None) -> Responder:
    """The responder of the daemon, `ask` and `bench`: `home` from `start_home` (or None),
    `scheduler` a started `TimerScheduler`, `volume` and `muted` read the device's own."""
    timers: Any = TimerIntentHandler(scheduler) if scheduler is not None else None
    if timers is not None and read_only_timers:
        timers = ReadOnlyTimers(timers)
    return Responder(
        session, home=home, timers=timers, recognize_timers=recognize_timer_intent,
        facts=DeviceFacts(volume=volume, muted=muted),
        home_configured=config.home.enabled and config.mqtt.enabled,
    )
