"""The assistant's core: a state machine on one asyncio loop, with a task per stage.

- `assistant.Assistant` starts, supervises and stops the stage tasks;
- `state.AssistantState` is what they share: events, the state shown, the turn queue;
- `turns`: turn requests, turns and the queue of them (`TurnQueue`), cancellation included;
- `listening` (the listener's events), `stages` (answering, speech, speaker) and `commands`
  (the table of command handlers) are the stages;
- `own_sound`: what the core decides about its own sound (`OwnSoundDecisions`,
  `state.sound_decisions`): marking the frames that hold its own sound, the wake earcon, the
  stop-word hold, what waits unheard;
- `parts`: the protocols of the parts handed in (listener, microphone, speaker, synthesizer,
  timers, MQTT bridge, answering).
"""

from .assistant import Assistant
from .turns import TurnKind, TurnRequest

__all__ = ["Assistant", "TurnKind", "TurnRequest"]
