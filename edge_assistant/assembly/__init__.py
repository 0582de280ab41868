"""The composition root: the one way the assistant and its parts are built from a config, for
the daemon (service.py), the commands (`ask`, `listen`, `say`) and `bench`.

- `Assembly` (parts.py) builds each part once, hands every part what it works with in its
  constructor, and closes them together;
- `model_paths` and `load_models` (loading.py): where the models are, resolved once, and
  loading them;
- `build_responder`, `start_home`, the read-only timers (answering.py): how a request is
  answered;
- `build_sources` (devices.py): the microphone and speaker, or WAV files;
- `AssistantPort` (port.py): how the timers, the facts and the faults reach the assistant
  built after them;
- `own_sound_for` (own_sound.py): the microphone's frames and the assistant's own sound in
  them (`audio.own_sound`), built together and handed to the listener and the core.
"""

from .answering import (
    READ_ONLY_TIMERS, READING_TIMER_INTENTS, ReadOnlyTimers, ReadOnlyTimerStore, build_responder, new_home,
    start_home, timer_store,
)
from .devices import NO_DEVICE, RunOptions, build_sources, has_microphone, report_device_fault
from .loading import LoadedModels, ModelPaths, load_models, model_paths
from .own_sound import own_sound_for
from .parts import Assembly
from .port import AssistantPort, timer_scheduler

__all__ = [
    "READ_ONLY_TIMERS", "READING_TIMER_INTENTS", "ReadOnlyTimers", "ReadOnlyTimerStore", "build_responder",
    "new_home", "start_home", "timer_store", "NO_DEVICE", "RunOptions", "build_sources", "has_microphone",
    "report_device_fault", "LoadedModels", "ModelPaths", "load_models", "model_paths",
    "own_sound_for", "Assembly", "AssistantPort", "timer_scheduler",
]
