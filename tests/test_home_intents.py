"""Template matching over the home-assistant-intents sentences with slot lists from the home."""

import statistics
import time

import pytest

from edge_assistant.home.intents import HOME_INTENTS, Recognizer, resolve_language
from tests.support.home_fixtures import SAMPLE_HOME, home_from_configs

EXPOSED = ("*", "lock.front_door")


@pytest.fixture
def recognizer():
    return Recognizer("en", home_from_configs(SAMPLE_HOME, expose=EXPOSED))


@pytest.mark.parametrize("text, intent, entities", [
    ("turn on the ceiling light in the kitchen", "HassTurnOn", ["light.ceiling_light"]),
    ("turn off the ceiling light in the living room", "HassTurnOff", ["light.ceiling_light_2"]),
    ("turn on all the lights in the kitchen", "HassTurnOn", ["light.ceiling_light", "light.counter_light"]),
    ("Turn off the garden pump.", "HassTurnOff", ["switch.garden_pump"]),
    ("toggle the garden pump", "HassToggle", ["switch.garden_pump"]),
    ("set the brightness of the counter light to 40%", "HassLightSet", ["light.counter_light"]),
    ("set the bedroom fan speed to 30%", "HassFanSetSpeed", ["fan.bedroom_fan"]),
    ("set the thermostat to 21 degrees", "HassClimateSetTemperature", ["climate.thermostat"]),
    ("set the blinds position to 50%", "HassSetPosition", ["cover.blinds"]),
    ("lock the front door", "HassTurnOn", ["lock.front_door"]),
    ("unlock the front door", "HassTurnOff", ["lock.front_door"]),
    ("is the garage door open", "HassGetState", ["cover.garage_door"]),
    ("what is the outside temperature", "HassGetState", ["sensor.outside_temperature"]),
    ("activate movie night", "HassTurnOn", ["scene.movie_night"]),
    ("what time is it", "HassGetCurrentTime", []),
    ("what's the date", "HassGetCurrentDate", []),
    ("never mind", "HassNevermind", []),
])
def test_sentences_match_intents_and_entities(recognizer, text, intent, entities):
    match = recognizer.recognize(text)
    assert match is not None, text
    assert (match.intent, list(match.entities), match.error) == (intent, entities, "")


def test_slots_and_response_keys(recognizer):
    match = recognizer.recognize("set the brightness of the counter light to 40%")
    assert match.slots == {"name": "counter light", "brightness": 40} and match.response_key == "brightness"
    match = recognizer.recognize("turn on the lights in the kitchen")
    # The area's own name, whatever form of it was said.
    assert match.slots == {"area": "Kitchen", "domain": "light"} and match.response_key == "lights_area"
    assert match.event_data()["source"] == "template" and match.event_data()["match_ms"] >= 0


def test_a_lock_or_garage_seen_by_a_wildcard_can_be_asked_about_but_not_controlled(recognizer):
    match = recognizer.recognize("open the garage door")
    assert (match.entities, match.error, match.error_slots) == (("cover.garage_door",), "no_entity_exposed", {"entity": "Garage Door"})


def test_unexposed_things_are_not_in_the_slot_lists():
    recognizer = Recognizer("en", home_from_configs(SAMPLE_HOME, expose=("Kitchen",)))
    assert recognizer.recognize("turn off the garden pump") is None
    assert recognizer.recognize("unlock the front door") is None
    assert recognizer.recognize("turn on the ceiling light").entities == ("light.ceiling_light",)


def test_a_domain_in_an_area_with_nothing_exposed_says_so():
    recognizer = Recognizer("en", home_from_configs(SAMPLE_HOME, expose=("Living Room", "Garden")))
    match = recognizer.recognize("turn on the lights in the garden")
    assert (match.entities, match.error) == ((), "no_domain_in_area")


def test_names_follow_the_registry(recognizer):
    home = recognizer.home
    assert recognizer.recognize("turn on the porch light") is None
    extra = home_from_configs({"light/porch": {"name": "Porch Light", "cmd_t": "p/set"}})
    for entity in extra.entities.values():
        home._replace(entity.source, entity)
    assert recognizer.recognize("turn on the porch light").entities == ("light.porch_light",)


def test_the_assistants_area_makes_here_work():
    recognizer = Recognizer("en", home_from_configs(SAMPLE_HOME, expose=EXPOSED, area="Kitchen"))
    match = recognizer.recognize("turn on the lights")
    assert match.entities == ("light.ceiling_light", "light.counter_light")


def test_other_intents_are_returned_for_the_caller_to_route():
    home = home_from_configs(SAMPLE_HOME, expose=EXPOSED)
    assert Recognizer("en", home).recognize("set a timer for 5 minutes") is None
    timers = Recognizer("en", home, allow=("HassStartTimer",))
    match = timers.recognize("set a timer for 5 minutes")
    assert match.intent == "HassStartTimer" and not match.handled_here and match.slots["minutes"] == 5
    custom = Recognizer("en", home, extra_intents=[{"language": "en", "intents": {
        "EdgeWeather": {"data": [{"sentences": ["how is the weather [today]"]}]}}}])
    assert custom.recognize("how is the weather today").intent == "EdgeWeather"
    custom.add_intents({"language": "en", "intents": {"EdgeJoke": {"data": [{"sentences": ["tell me a joke"]}]}}})
    assert custom.recognize("tell me a joke").intent == "EdgeJoke"
    assert set(HOME_INTENTS) >= {"HassTurnOn", "HassGetState"}


def test_language_fallback(caplog):
    assert resolve_language("de-CH") == "de-CH"
    assert resolve_language("pt_BR") == "pt-BR"
    assert resolve_language("en-GB") == "en"
    assert resolve_language("xx") == "en"
    assert "no intents for language 'xx'" in caplog.text


def test_german_templates_work_with_the_same_home():
    recognizer = Recognizer("de", home_from_configs(SAMPLE_HOME, expose=EXPOSED))
    match = recognizer.recognize("schalte die Gartenpumpe aus") or recognizer.recognize("schalte garden pump aus")
    assert match is not None and match.intent == "HassTurnOff" and match.entities == ("switch.garden_pump",)


def median_ms(recognizer, text, runs=7):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        recognizer.recognize(text)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


SENTENCES = ("turn on the ceiling light in the kitchen", "turn off all the lights in the kitchen",
             "is the garage door open", "what is the capital of France")


def test_matching_is_fast_in_a_realistic_home(recognizer):
    recognizer.recognize("warm up")
    for text in SENTENCES:
        assert median_ms(recognizer, text) < 50, text


def test_matching_stays_reasonable_with_five_thousand_entities():
    configs = dict(SAMPLE_HOME)
    for index in range(5000):
        configs[f"light/bulk_{index}"] = {"name": f"Lamp {index}", "cmd_t": f"b/{index}",
                                          "dev": {"sa": f"Room {index % 100}"}}
    recognizer = Recognizer("en", home_from_configs(configs, expose=EXPOSED))
    started = time.perf_counter()
    recognizer.slot_lists()
    assert time.perf_counter() - started < 2.0
    assert recognizer.recognize("turn on lamp 4321").entities == ("light.lamp_4321",)
    for text in SENTENCES:
        assert median_ms(recognizer, text, runs=3) < 250, text


def test_the_best_ranked_reading_wins_as_in_home_assistant():
    configs = dict(SAMPLE_HOME)
    configs["fan/ceiling_fan"] = {"name": "Ceiling Fan", "cmd_t": "lf/set", "stat_t": "lf/state",
                                  "dev": {"sa": "Living Room"}}
    recognizer = Recognizer("en", home_from_configs(configs, expose=["*"]))
    # hassil also reads this as "are all living room fans on?"; Home Assistant's ranking
    # (recognize_best) prefers the command, which matches more of the sentence literally.
    match = recognizer.recognize("all living room fans on")
    assert (match.intent, match.entities) == ("HassTurnOn", ("fan.ceiling_fan",))
    match = recognizer.recognize("is the ceiling fan on")
    assert (match.intent, match.entities) == ("HassGetState", ("fan.ceiling_fan",))


PLACES = {
    "areas": [{"name": "Kitchen", "floor": "First floor", "aliases": ["cooking area"]},
              {"name": "Living Room", "floor": "First floor", "aliases": ["lounge"]},
              {"name": "Bedroom", "floor": "Second floor"}, {"name": "Office", "floor": "Second floor"}],
    "floors": [{"name": "First floor", "aliases": ["downstairs", "ground floor"]}],
    "aliases": [{"name": "light.desk_bulb", "aliases": ["reading light"]}],
}


@pytest.fixture
def placed():
    from tests.support.home_fixtures import TASMOTA_PAYLOADS, Z2M_PAYLOADS

    return Recognizer("en", home_from_configs({**Z2M_PAYLOADS, **TASMOTA_PAYLOADS}, expose=["*"], **PLACES))


@pytest.mark.parametrize("text, intent, entities", [
    ("turn off the lights on the first floor", "HassTurnOff", ["light.hue_strip", "light.kitchen_lights"]),
    ("turn off all the lights downstairs", "HassTurnOff", ["light.hue_strip", "light.kitchen_lights"]),
    ("turn off the lights on the second floor", "HassTurnOff",
     ["light.bedroom_lamp", "light.desk_bulb", "light.desk_lamp"]),
    ("turn on the lights in the lounge", "HassTurnOn", ["light.hue_strip"]),
    ("turn on the reading light", "HassTurnOn", ["light.desk_bulb"]),
    # Names as people say them: singular or plural, whatever the device is called.
    ("Is the kitchen light on?", "HassGetState", ["light.kitchen_lights"]),
    ("is the kitchen lights on", "HassGetState", ["light.kitchen_lights"]),
    ("turn off the bedroom lamps", "HassTurnOff", ["light.bedroom_lamp"]),
])
def test_floors_aliases_and_names_as_said(placed, text, intent, entities):
    match = placed.recognize(text)
    assert match is not None and not match.error, text
    assert (match.intent, list(match.entities)) == (intent, entities)


def test_a_plural_that_is_another_devices_name_stays_that_device():
    configs = {"light/one": {"name": "Desk Light", "cmd_t": "a"}, "light/two": {"name": "Desk Lights", "cmd_t": "b"}}
    recognizer = Recognizer("en", home_from_configs(configs, expose=["*"]))
    assert recognizer.recognize("turn on the desk light").entities == ("light.desk_light",)
    assert recognizer.recognize("turn on the desk lights").entities == ("light.desk_lights",)
