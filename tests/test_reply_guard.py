"""The guard on the model's reply: claims of what only the device knows, and the prompt's own
wording, are refused; ordinary answers pass."""

import pytest

from edge_assistant.config import PromptConfig
from edge_assistant.thinking.reply_guard import ReplyGuard
from edge_assistant.respond import TOOL_INSTRUCTIONS

GUARD = ReplyGuard((PromptConfig().system_prompt, TOOL_INSTRUCTIONS))


@pytest.mark.parametrize("reply", [
    # Each from the issue: said while nothing was done, or the device knew better.
    "The kitchen lights are on.", "It is on.", "12:03 p.m.", "It's 12:03.", "I have a kitchen light.",
    "Your short spoken answer.", "It is 7 pm.",
    # More of the same kinds.
    "I have turned on the kitchen light.", "I've set a timer for five minutes.", "Your timer is running.",
    "There are two minutes left.", "The front door is now locked.", "Done, I switched it off.",
    "It is seven o'clock.", "Okay, I'll turn it off.", "Timer set for 10 minutes.",
    "You are a helpful voice assistant running offline on a small home device.",
    'Reply with {"answer": "..."}.',
])
def test_claims_and_prompt_echoes_are_refused(reply):
    assert GUARD.refusal(reply) is not None


@pytest.mark.parametrize("reply", [
    "Paris is the capital of France.", "A spider has eight legs.", "Water boils at 100 degrees Celsius.",
    "I don't know your neighbour's name.", "Sorry, I can't see who is at the door.",
    "Jupiter is the largest planet.", "Shakespeare wrote Romeo and Juliet.", "Bees make honey.",
    "It is sunny. Bring a hat!", "The opposite of hot is cold.",
])
def test_ordinary_answers_pass(reply):
    assert GUARD.refusal(reply) is None
