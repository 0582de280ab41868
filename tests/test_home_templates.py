"""Discovery templates rendered as Home Assistant renders them (a Jinja sandbox with HA's
variables and filters), on payloads shaped as zigbee2mqtt and Tasmota publish them; a
template that cannot be used disables only what it serves."""

import json

import pytest

from edge_assistant.home.actions import Unsupported, payloads
from edge_assistant.home.entities import supported_actions
from edge_assistant.home.states import apply_state
from edge_assistant.home.templates import (
    TemplateFailed,
    UnsupportedTemplate,
    parse_command_template,
    parse_value_template,
)
from tests.support.home_fixtures import TASMOTA_PAYLOADS, Z2M_PAYLOADS, home_from_configs
from tests.support.mqtt_fixtures import run_async
from tests.test_home_actions import start_control


def one(where, config, **options):
    home = home_from_configs({where: config}, **options)
    (entity,) = home.entities.values()
    return entity


def state(entity, topic, payload):
    apply_state(entity, topic, json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode())
    return entity.state


# ---------------------------------------------------------------------------------------------
# The three payloads of issue 22, exactly


def test_zigbee2mqtt_cover_set_position_template_uses_position():
    config = {"name": None, "command_topic": "zigbee2mqtt/Living Curtain/set",
              "state_topic": "zigbee2mqtt/Living Curtain", "set_position_topic": "zigbee2mqtt/Living Curtain/set",
              "position_topic": "zigbee2mqtt/Living Curtain", "position_template": "{{ value_json.position }}",
              "set_position_template": "{ \"position\": {{ position }} }",
              "device": {"identifiers": ["c1"], "name": "Living Curtain", "suggested_area": "Living Room"}}
    cover = one("cover/curtain", config)
    assert cover.read_only_reason == "" and cover.broken_templates == {}
    assert supported_actions(cover) == ("open", "close", "stop", "set_position")
    assert payloads(cover, "open", {}) == [("zigbee2mqtt/Living Curtain/set", "OPEN")]
    assert payloads(cover, "set_position", {"position": 40}) == [("zigbee2mqtt/Living Curtain/set", '{ "position": 40 }')]
    assert state(cover, "zigbee2mqtt/Living Curtain", {"position": 30, "state": "OPEN"})["position"] == 30


@pytest.mark.parametrize("key", ["command_template", "percentage_command_template", "preset_mode_command_template"])
def test_zigbee2mqtt_fan_value_default_template(key):
    config = {"name": "Fan", "command_topic": "f/set", "state_topic": "f", "percentage_command_topic": "f/pct",
              "preset_mode_command_topic": "f/preset", "preset_modes": ["auto"], key: "{{ value | default('') }}"}
    fan = one("fan/f", config)
    assert fan.read_only_reason == "" and fan.broken_templates == {}
    assert {"turn_on", "turn_off", "set_percentage"} <= set(supported_actions(fan))
    assert payloads(fan, "turn_on", {}) == [("f/set", "ON")]
    assert payloads(fan, "set_percentage", {"percentage": 50}) == [("f/pct", "50")]


def test_tasmota_rgb_light_with_split_and_join_in_its_value_template():
    config = TASMOTA_PAYLOADS["light/A0B1C2_LI_1"]
    assert config["rgb_val_tpl"] == "{{value_json.Color.split(',')[0:3]|join(',')}}"
    lamp = one("light/A0B1C2_LI_1", config)
    assert lamp.read_only_reason == "" and lamp.broken_templates == {}
    assert set(supported_actions(lamp)) == {"turn_on", "turn_off", "toggle", "set_brightness", "set_color", "set_color_temp"}
    assert payloads(lamp, "turn_on", {}) == [("tasmota_A0B1C2/cmnd/POWER", "ON")]
    seen = state(lamp, "tasmota_A0B1C2/tele/STATE",
                 {"POWER": "ON", "Dimmer": 40, "Color": "255,128,0,0,0", "CT": 153, "Scheme": 0})
    assert seen["state"] == "on" and seen["rgb_color"] == [255, 128, 0] and seen["brightness_pct"] == 40
    assert payloads(lamp, "set_color", {"color": "red"}) == [("tasmota_A0B1C2/cmnd/Color2", "255,0,0"),
                                                              ("tasmota_A0B1C2/cmnd/POWER", "ON")]


def test_an_unusable_state_template_does_not_block_commands():
    config = dict(TASMOTA_PAYLOADS["light/A0B1C2_LI_1"], val_tpl="{{ value_json.POWER | no_such_filter }}",
                  rgb_cmd_tpl="{% for c in value %}{{ c }}{% endfor %}")
    lamp = one("light/A0B1C2_LI_1", config)
    assert set(lamp.broken_templates) == {"value_template", "rgb_command_template"}
    assert lamp.read_only_reason == ""
    # The power state cannot be read and colours cannot be sent; everything else works.
    assert set(supported_actions(lamp)) == {"turn_on", "turn_off", "toggle", "set_brightness", "set_color_temp"}
    seen = state(lamp, "tasmota_A0B1C2/tele/STATE", {"POWER": "ON", "Dimmer": 40, "Color": "1,2,3", "CT": 200})
    assert "state" not in seen and seen["brightness_pct"] == 40 and seen["rgb_color"] == [1, 2, 3]
    assert "value_template" in lamp.summary()["template_problems"]


def test_a_template_that_fails_on_one_value_fails_that_command_only():
    fan = one("fan/f", {"name": "Fan", "cmd_t": "f/set", "pct_cmd_t": "f/pct",
                        "pct_cmd_tpl": "{{ {1: 'low', 2: 'high'}[value] }}", "spd_rng_max": 3})
    assert payloads(fan, "set_percentage", {"percentage": 30}) == [("f/pct", "low")]
    with pytest.raises(Unsupported, match="percentage_command_template failed"):
        payloads(fan, "set_percentage", {"percentage": 100})  # speed 3: not in the template's table
    assert payloads(fan, "turn_on", {}) == [("f/set", "ON")]


# ---------------------------------------------------------------------------------------------
# Every kind of device, as the two projects announce it


@pytest.mark.parametrize("where", sorted(Z2M_PAYLOADS))
def test_zigbee2mqtt_payloads_are_fully_usable(where):
    entity = one(where, Z2M_PAYLOADS[where])
    assert entity.read_only_reason == "" and entity.broken_templates == {}, entity.broken_templates
    if entity.domain not in ("sensor", "binary_sensor"):
        assert supported_actions(entity)


@pytest.mark.parametrize("where", sorted(TASMOTA_PAYLOADS))
def test_tasmota_payloads_are_fully_usable(where):
    entity = one(where, TASMOTA_PAYLOADS[where])
    assert entity.read_only_reason == "" and entity.broken_templates == {}, entity.broken_templates
    if entity.domain != "sensor":
        assert supported_actions(entity)


def test_zigbee2mqtt_lights_in_every_colour_mode():
    home = home_from_configs({k: v for k, v in Z2M_PAYLOADS.items() if k.startswith("light/")})
    get = home.get
    assert payloads(get("light.desk_bulb"), "set_color", {"color": "red"}) == [
        ("zigbee2mqtt/Desk Bulb/set", '{"state":"ON","color":{"x":0.6401,"y":0.33}}')]
    assert payloads(get("light.hue_strip"), "set_color", {"color": "blue"}) == [
        ("zigbee2mqtt/Hue Strip/set", '{"state":"ON","color":{"h":240.0,"s":100.0}}')]
    assert payloads(get("light.bedroom_lamp"), "set_color", {"color": "green"}) == [
        ("zigbee2mqtt/Bedroom Lamp/set", '{"state":"ON","color":{"r":0,"g":128,"b":0}}')]
    assert payloads(get("light.porch_light"), "set_color_temp", {"color_temp_kelvin": 2700}) == [
        ("zigbee2mqtt/Porch Light/set", '{"state":"ON","color_temp":370}')]
    assert "set_color" not in supported_actions(get("light.porch_light"))
    assert supported_actions(get("light.hall_dimmer")) == ("turn_on", "turn_off", "toggle", "set_brightness")
    assert supported_actions(get("light.kitchen_lights")) == ("turn_on", "turn_off", "toggle")


def test_zigbee2mqtt_cover_tilt_fan_presets_climate_lock_valve_and_sensors():
    home = home_from_configs(Z2M_PAYLOADS)
    curtain = home.get("cover.living_curtain")
    assert payloads(curtain, "set_tilt_position", {"tilt_position": 30}) == [("zigbee2mqtt/Living Curtain/set/tilt", "30")]
    seen = state(curtain, "zigbee2mqtt/Living Curtain", {"state": "OPEN", "position": 70, "tilt": 20})
    assert (seen["state"], seen["position"], seen["tilt_position"]) == ("open", 70, 20)
    blind = home.get("cover.office_blind")
    assert state(blind, "zigbee2mqtt/Office Blind", {"running": True, "position": 40})["state"] == "closing"
    fan = home.get("fan.ceiling_fan")
    assert payloads(fan, "set_percentage", {"percentage": 60}) == [("zigbee2mqtt/Ceiling Fan/set/fan_mode", "medium")]
    seen = state(fan, "zigbee2mqtt/Ceiling Fan", {"fan_state": "ON", "fan_mode": "high"})
    assert (seen["state"], seen["percentage"]) == ("on", 100) and "preset_mode" not in seen
    assert state(fan, "zigbee2mqtt/Ceiling Fan", {"fan_state": "ON", "fan_mode": "smart"})["preset_mode"] == "smart"
    radiator = home.get("climate.bedroom_radiator")
    assert payloads(radiator, "set_temperature", {"temperature": 21.5}) == [
        ("zigbee2mqtt/Bedroom Radiator/set/current_heating_setpoint", "21.5")]
    seen = state(radiator, "zigbee2mqtt/Bedroom Radiator",
                 {"local_temperature": 19.5, "system_mode": "heat", "current_heating_setpoint": 21, "running_state": "idle"})
    assert (seen["current_temperature"], seen["hvac_mode"], seen["temperature"]) == (19.5, "heat", 21)
    lock = home.get("lock.front_door")
    assert payloads(lock, "unlock", {}) == [("zigbee2mqtt/Front Door/set", "UNLOCK")]
    assert state(lock, "zigbee2mqtt/Front Door", {"state": "LOCK"})["state"] == "locked"
    valve = home.get("valve.main_valve")
    assert payloads(valve, "set_position", {"position": 100}) == [("zigbee2mqtt/Main Valve/set", '{"position": 100 }')]
    assert state(home.get("sensor.bedroom_sensor_temperature"), "zigbee2mqtt/Bedroom Sensor",
                 {"temperature": 21.37})["state"] == "21.37"
    assert state(home.get("binary_sensor.hall_window_contact"), "zigbee2mqtt/Hall Window",
                 {"contact": False})["state"] == "on"


def test_tasmota_shutter_tilt_fan_and_sensors():
    home = home_from_configs(TASMOTA_PAYLOADS)
    shutter = home.get("cover.kitchen_shutter")
    assert payloads(shutter, "set_position", {"position": 25}) == [("tasmota_F6A7B8/cmnd/ShutterPosition1", "25")]
    assert payloads(shutter, "set_tilt_position", {"tilt_position": 50}) == [("tasmota_F6A7B8/cmnd/ShutterTilt1", "0")]
    assert payloads(shutter, "open", {}) == [("tasmota_F6A7B8/cmnd/Backlog", "ShutterOpen1")]
    seen = state(shutter, "tasmota_F6A7B8/stat/RESULT", {"Shutter1": {"Position": 60, "Direction": 0, "Tilt": 45}})
    assert (seen["position"], seen["tilt_position"]) == (60, 75)
    fan = home.get("fan.bedroom_fan")
    assert payloads(fan, "turn_on", {}) == [("tasmota_B9C0D1/cmnd/FanSpeed", "2")]
    assert payloads(fan, "turn_off", {}) == [("tasmota_B9C0D1/cmnd/FanSpeed", "0")]
    seen = state(fan, "tasmota_B9C0D1/tele/STATE", {"FanSpeed": 3})
    assert (seen["state"], seen["percentage"]) == ("on", 100)
    assert state(home.get("sensor.bathroom_am2301_humidity"), "tasmota_E2F3A4/tele/SENSOR",
                 {"AM2301": {"Temperature": 22.1, "Humidity": 48.26}})["state"] == "48.3"


# ---------------------------------------------------------------------------------------------
# The sandbox: Home Assistant's variables and filters; nothing beyond


@pytest.mark.parametrize("text, payload, expected", [
    ("{{ value }}", "ON", "ON"),
    ("{{ value_json.a.b[1] }}", '{"a": {"b": [1, 2]}}', "2"),
    ("{{ value_json['x y'] }}", '{"x y": 3}', "3"),
    ("{{ value_json.missing | default('none') }}", "{}", "none"),
    ("{{ value | int + 1 }}", "41", "42"),
    ("{{ value | int(base=16) }}", "ff", "255"),
    ("{{ (value | float * 2.55) | round }}", "40", "102.0"),
    ("{{ value | float | round(1) }}", "21.37", "21.4"),
    ("{{ value.split(',')[0:2] | join('-') }}", "1,2,3", "1-2"),
    ("{{ value_json | tojson }}", '{"a": 1}', '{"a": 1}'),
    ("{{ value_json | to_json }}", '{"a": 1}', '{"a":1}'),
    ("{{ (value | from_json).a }}", '{"a": 5}', "5"),
    ("{{ iif(value == 'ON', 'on', 'off') }}", "ON", "on"),
    ("{{ (value == 'ON') | iif('yes', 'no') }}", "OFF", "no"),
    ("{{ value_json.a | is_defined }}", '{"a": 7}', "7"),
    ("{{ '%02x%02x' | format(1, 255) }}", "", "01ff"),
    ("{% set m = {'a': 'x'} %}{{ m[value] }}", "a", "x"),
    ("{{ value_json.state if value_json.state is defined else 'gone' }}", "{}", "gone"),
    ("{{ value | lower | replace('o', '0') }}", "ON OFF", "0n 0ff"),
])
def test_value_templates_render_as_home_assistant(text, payload, expected):
    assert parse_value_template(text).evaluate(payload) == expected


@pytest.mark.parametrize("text, payload", [
    ("{{ value_json.missing }}", "{}"),           # a key the payload lacks: nothing read
    ("{{ value_json.a }}", "not json"),           # value_json undefined
    ("{{ value | int }}", "abc"),                 # no number and no default
    ("{{ value_json.a | is_defined }}", "{}"),
    ("{{ 'x' * 100000 }}", ""),                   # text beyond the cap
    ("{{ 9 ** 9 ** 9 }}", ""),
    ("{{ '%999999s' | format(1) }}", ""),
    ("{{ value.ljust(100000) }}", "a"),           # a method that only grows text
    ("{{ value.__class__ }}", "a"),
    ("{{ range(10000) | list }}", ""),
])
def test_value_templates_that_fail_read_nothing(text, payload):
    assert parse_value_template(text).evaluate(payload) is None


@pytest.mark.parametrize("text", [
    "{% for i in range(9) %}{% for j in range(9) %}x{% endfor %}{% endfor %}",
    "{% macro m() %}x{% endmacro %}{{ m() }}",
    "{% include 'x' %}",
    "{{ value | no_such_filter }}",
    "{{ value ",
    "{{ states('light.x') }}x" * 200,
    "{% set a = 'x' %}" + "{% set a = a ~ a %}" * 12 + "{{ a }}",
])
def test_templates_that_are_not_allowed(text):
    with pytest.raises(UnsupportedTemplate):
        parse_value_template(text)


def test_command_templates_get_their_keys_variables():
    assert parse_command_template('{"volume": {{ value }}}').render(40) == '{"volume": 40}'
    template = parse_command_template("{{'#%02x%02x%02x' | format(red, green, blue)}}")
    assert template.render("255,0,16", red=255, green=0, blue=16) == "#ff0010"
    template = parse_command_template("{{ {'on': 1}[value] }}")
    with pytest.raises(TemplateFailed):
        template.render("off")
    with pytest.raises(TemplateFailed):
        parse_command_template("{{ states('light.x') }}").render(1)


def test_default_schema_colour_topics_and_their_templates():
    base = {"name": "Strip", "cmd_t": "s/set"}
    hs = one("light/s", dict(base, hs_cmd_t="s/hs", hs_cmd_tpl="{{ hue | int }},{{ sat | int }}"))
    assert payloads(hs, "set_color", {"color": "blue"}) == [("s/hs", "240,100"), ("s/set", "ON")]
    xy = one("light/s", dict(base, xy_cmd_t="s/xy"))
    assert payloads(xy, "set_color", {"color": "red"}) == [("s/xy", "0.6401,0.33"), ("s/set", "ON")]
    rgbw = one("light/s", dict(base, rgbw_cmd_t="s/rgbw", rgbw_cmd_tpl="{{ red }} {{ green }} {{ blue }} {{ white }}"))
    assert payloads(rgbw, "set_color", {"color": "red"}) == [("s/rgbw", "255 0 0 0"), ("s/set", "ON")]
    hex_rgb = one("light/s", dict(base, rgb_cmd_t="s/rgb", rgb_cmd_tpl="{{'#%02x%02x%02x' | format(red, green, blue)}}"))
    assert payloads(hex_rgb, "set_color", {"color": "red"}) == [("s/rgb", "#ff0000"), ("s/set", "ON")]


# ---------------------------------------------------------------------------------------------
# End to end: the issue's three devices over a real broker


@run_async
async def test_the_issues_devices_are_controlled_over_mqtt(mosquitto, home_devices):
    devices = home_devices(mosquitto)
    curtain = devices.zigbee2mqtt("cover/living_curtain")
    fan = devices.zigbee2mqtt("fan/ceiling_fan")
    lamp = devices.tasmota_light()
    control = await start_control(mosquitto, expose=["*"])
    try:
        result = await control.handle("open the living curtain")
        assert result.outcome == "done", result.speech
        assert curtain.state["state"] == "OPEN" and control.home.get("cover.living_curtain").state["position"] == 100
        result = await control.handle("set the living curtain position to 40%")
        assert result.outcome == "done" and curtain.commands[-1].text == '{ "position": 40 }'
        result = await control.handle("turn on the desk lamp")
        assert result.outcome == "done" and lamp.state["POWER"] == "ON"
        result = await control.handle("set the desk lamp to red")
        assert result.outcome == "done" and lamp.state["Color"].startswith("255,0,0")
        assert control.home.get("light.desk_lamp").state["rgb_color"] == [255, 0, 0]
        result = await control.handle("set the ceiling fan speed to 100%")
        assert result.outcome == "done" and fan.state["fan_mode"] == "high"
        assert control.home.get("fan.ceiling_fan").state["percentage"] == 100
    finally:
        await control.aclose()
