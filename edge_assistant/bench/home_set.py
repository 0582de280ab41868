"""The home the `home` bench section talks to, and what is said to it.

34 devices in ten areas on two floors (and outside), announced as zigbee2mqtt (full keys,
`null` names, templates over a JSON state) and Tasmota (abbreviated keys, `~`, tele/STATE)
announce them; `[home]` areas, floors and aliases as a user would write them. `SENTENCES` pairs
each of about 170 requests with what it must do: the (entity, action) pairs that are right
(any non-empty subset of them is, for a request the LLM answers), or nothing at all, for
questions and for requests that name no device clearly ("turn on the fan" with four fans).
"""

from __future__ import annotations

from typing import Any

PREFIX = "homeassistant"

FLOORS = {"Ground floor": ("Kitchen", "Living Room", "Hallway", "Dining Room"),
          "First floor": ("Bedroom", "Office", "Bathroom", "Kids Room")}
HOME_PLACES = {
    "areas": [{"name": area, "floor": floor, **({"aliases": ["lounge"]} if area == "Living Room" else {})}
              for floor, areas in FLOORS.items() for area in areas],
    "floors": [{"name": "Ground floor", "aliases": ["downstairs"]}, {"name": "First floor", "aliases": ["upstairs"]}],
    "aliases": [{"name": "light.reading_lamp", "aliases": ["book light"]}],
}
EXPOSE = ("*", "lock.front_door", "cover.garage_door", "valve.sprinkler_valve")


def _z2m(device: str, area: str, **config: Any) -> dict[str, Any]:
    base = f"zigbee2mqtt/{device}"
    payload: dict[str, Any] = {
        "availability": [{"topic": "zigbee2mqtt/bridge/state", "value_template": "{{ value_json.state }}"}],
        "device": {"identifiers": [f"zigbee2mqtt_{device.lower().replace(' ', '_')}"], "name": device,
                   "suggested_area": area},
        "origin": {"name": "Zigbee2MQTT"}, "name": None, "state_topic": base, "command_topic": f"{base}/set",
    }
    payload.update({k: v.replace("{base}", base) if isinstance(v, str) else v for k, v in config.items()})
    return payload


def _tasmota(node: str, device: str, area: str, **config: Any) -> dict[str, Any]:
    payload = {"~": f"tasmota_{node}/", "avty_t": "~tele/LWT", "pl_avail": "Online", "pl_not_avail": "Offline",
               "name": None, "stat_t": "~tele/STATE", "uniq_id": f"{node}_1",
               "dev": {"ids": [node], "name": device, "sa": area}}
    payload.update(config)
    return payload


def _z2m_light(device: str, area: str, *modes: str) -> dict[str, Any]:
    extra = {"color_mode": True, "supported_color_modes": list(modes)} if modes else {}
    return _z2m(device, area, schema="json", brightness=True, brightness_scale=254, **extra)


def _tasmota_light(node: str, device: str, area: str, color: bool = False) -> dict[str, Any]:
    extra = {"rgb_cmd_t": "~cmnd/Color2", "rgb_stat_t": "~tele/STATE",
             "rgb_val_tpl": "{{value_json.Color.split(',')[0:3]|join(',')}}"} if color else {}
    return _tasmota(node, device, area, cmd_t="~cmnd/POWER", val_tpl="{{value_json.POWER}}",
                    bri_cmd_t="~cmnd/Dimmer", bri_stat_t="~tele/STATE", bri_scl=100, on_cmd_type="brightness",
                    bri_val_tpl="{{value_json.Dimmer}}", **extra)


def _tasmota_relay(node: str, device: str, area: str) -> dict[str, Any]:
    return _tasmota(node, device, area, cmd_t="~cmnd/POWER", val_tpl="{{value_json.POWER}}")


def _tasmota_shutter(node: str, device: str, area: str) -> dict[str, Any]:
    return _tasmota(node, device, area, cmd_t="~cmnd/Backlog", pl_open="ShutterOpen1", pl_cls="ShutterClose1",
                    pl_stop="ShutterStop1", stat_t=None, pos_t="~stat/RESULT",
                    pos_tpl="{{value_json.Shutter1.Position}}", set_pos_t="~cmnd/ShutterPosition1", dev_cla="shutter")


def _z2m_cover(device: str, area: str, device_class: str = "", tilt: bool = False) -> dict[str, Any]:
    extra = {"tilt_command_topic": "{base}/set/tilt", "tilt_status_topic": "{base}",
             "tilt_status_template": "{{ value_json.tilt }}"} if tilt else {}
    if device_class:
        extra["device_class"] = device_class
    return _z2m(device, area, value_template="{{ value_json.state }}", state_open="OPEN", state_closed="CLOSE",
                position_template="{{ value_json.position }}", set_position_template='{ "position": {{ position }} }',
                set_position_topic="{base}/set", position_topic="{base}", **extra)


def _z2m_fan(device: str, area: str) -> dict[str, Any]:
    return _z2m(device, area, state_value_template="{{ value_json.fan_state }}", command_topic="{base}/set/fan_state",
                percentage_state_topic="{base}", percentage_command_topic="{base}/set/fan_mode",
                percentage_value_template="{{ {'off':0, 'low':1, 'medium':2, 'high':3}[value_json.fan_mode] "
                                          "| default('None') }}",
                percentage_command_template="{{ {0:'off', 1:'low', 2:'medium', 3:'high'}[value] | default('') }}",
                speed_range_min=1, speed_range_max=3, preset_mode_command_topic="{base}/set/fan_mode",
                preset_mode_command_template="{{ value | default('') }}", preset_modes=["auto", "smart"])


def _tasmota_fan(node: str, device: str, area: str) -> dict[str, Any]:
    return _tasmota(node, device, area, cmd_t="~cmnd/FanSpeed",
                    val_tpl="{% if value_json.FanSpeed > 0 %}ON{% else %}OFF{% endif %}",
                    cmd_tpl="{% if value == 'ON' %}2{% else %}0{% endif %}", pct_cmd_t="~cmnd/FanSpeed",
                    pct_stat_t="~tele/STATE", pct_val_tpl="{{value_json.FanSpeed}}", spd_rng_min=1, spd_rng_max=3)


def _z2m_thermostat(device: str, area: str) -> dict[str, Any]:
    return _z2m(device, area, state_topic=None, command_topic=None, temp_step=0.5, min_temp="5", max_temp="30",
                current_temperature_topic="{base}", current_temperature_template="{{ value_json.local_temperature }}",
                mode_state_topic="{base}", mode_state_template="{{ value_json.system_mode }}",
                modes=["off", "heat", "auto"], mode_command_topic="{base}/set/system_mode",
                temperature_command_topic="{base}/set/current_heating_setpoint", temperature_state_topic="{base}",
                temperature_state_template="{{ value_json.current_heating_setpoint }}")


def discovery_configs() -> dict[str, dict[str, Any]]:
    """`<component>/<object_id>` -> config, as the devices publish them."""
    return {
        # Ground floor
        "light/kitchen_lights": _z2m_light("Kitchen Lights", "Kitchen", "color_temp"),
        "light/counter_strip": _z2m_light("Counter Strip", "Kitchen", "rgb"),
        "switch/A1_RL": _tasmota_relay("A1", "Coffee Machine", "Kitchen"),
        "cover/A2_SHT": _tasmota_shutter("A2", "Kitchen Shutter", "Kitchen"),
        "light/living_room_lamp": _z2m_light("Living Room Lamp", "Living Room", "xy", "color_temp"),
        "light/A3_LI": _tasmota_light("A3", "Reading Lamp", "Living Room"),
        "cover/living_room_curtain": _z2m_cover("Living Room Curtain", "Living Room", "curtain", tilt=True),
        "fan/ceiling_fan": _z2m_fan("Ceiling Fan", "Living Room"),
        "climate/living_room_thermostat": _z2m_thermostat("Living Room Thermostat", "Living Room"),
        "switch/A4_RL": _tasmota_relay("A4", "TV Plug", "Living Room"),
        "light/A5_LI": _tasmota_relay("A5", "Hallway Light", "Hallway"),
        "lock/front_door": _z2m("Front Door", "Hallway", value_template="{{ value_json.state }}",
                                state_locked="LOCK", state_unlocked="UNLOCK"),
        "binary_sensor/hallway_motion": _z2m("Hallway Motion", "Hallway", name="Occupancy", command_topic=None,
                                             device_class="occupancy", payload_on=True, payload_off=False,
                                             value_template="{{ value_json.occupancy }}"),
        "light/dining_table_light": _z2m_light("Dining Table Light", "Dining Room"),
        "cover/dining_room_blinds": _z2m_cover("Dining Room Blinds", "Dining Room", "blind"),
        # First floor
        "light/bedroom_lamp": _z2m_light("Bedroom Lamp", "Bedroom", "rgb"),
        "light/A6_LI": _tasmota_light("A6", "Bedroom Ceiling Light", "Bedroom", color=True),
        "fan/A7_FAN": _tasmota_fan("A7", "Bedroom Fan", "Bedroom"),
        "cover/A8_SHT": _tasmota_shutter("A8", "Bedroom Blinds", "Bedroom"),
        "climate/bedroom_radiator": _z2m_thermostat("Bedroom Radiator", "Bedroom"),
        "light/A9_LI": _tasmota_light("A9", "Desk Lamp", "Office", color=True),
        "light/office_ceiling_light": _z2m_light("Office Ceiling Light", "Office", "color_temp"),
        "switch/B1_RL": _tasmota_relay("B1", "Printer Plug", "Office"),
        "fan/desk_fan": _z2m_fan("Desk Fan", "Office"),
        "light/bathroom_mirror_light": _z2m_light("Bathroom Mirror Light", "Bathroom"),
        "fan/B2_FAN": _tasmota_fan("B2", "Bathroom Extractor", "Bathroom"),
        "sensor/B3_HUM": _tasmota("B3", "Bathroom Sensor", "Bathroom", name="Humidity", stat_t="~tele/SENSOR",
                                  val_tpl="{{value_json['AM2301'].Humidity|round(1)}}", unit_of_meas="%",
                                  dev_cla="humidity"),
        "light/night_light": _z2m_light("Night Light", "Kids Room", "rgb"),
        "cover/kids_room_blinds": _z2m_cover("Kids Room Blinds", "Kids Room", "blind"),
        # Outside
        "switch/B4_RL": _tasmota_relay("B4", "Garden Pump", "Garden"),
        "light/garden_lights": _z2m_light("Garden Lights", "Garden"),
        "valve/sprinkler_valve": _z2m("Sprinkler Valve", "Garden", reports_position=True,
                                      value_template="{{ value_json.position }}",
                                      command_template='{"position": {{ value }} }'),
        "cover/garage_door": _z2m("Garage Door", "Garage", device_class="garage",
                                  value_template="{{ value_json.state }}", state_open="OPEN", state_closed="CLOSE"),
        "light/B5_LI": _tasmota_relay("B5", "Garage Light", "Garage"),
    }


# Entity ids by what the sentences call them.
LIGHTS = {
    "kitchen lights": "light.kitchen_lights", "counter strip": "light.counter_strip",
    "living room lamp": "light.living_room_lamp", "reading lamp": "light.reading_lamp",
    "hallway light": "light.hallway_light", "dining table light": "light.dining_table_light",
    "bedroom lamp": "light.bedroom_lamp", "bedroom ceiling light": "light.bedroom_ceiling_light",
    "desk lamp": "light.desk_lamp", "office ceiling light": "light.office_ceiling_light",
    "bathroom mirror light": "light.bathroom_mirror_light", "night light": "light.night_light",
    "garden lights": "light.garden_lights", "garage light": "light.garage_light",
}
SWITCHES = {"coffee machine": "switch.coffee_machine", "tv plug": "switch.tv_plug",
            "printer plug": "switch.printer_plug", "garden pump": "switch.garden_pump"}
FANS = {"ceiling fan": "fan.ceiling_fan", "bedroom fan": "fan.bedroom_fan", "desk fan": "fan.desk_fan",
        "bathroom extractor": "fan.bathroom_extractor"}
COVERS = {"kitchen shutter": "cover.kitchen_shutter", "living room curtain": "cover.living_room_curtain",
          "dining room blinds": "cover.dining_room_blinds", "bedroom blinds": "cover.bedroom_blinds",
          "kids room blinds": "cover.kids_room_blinds"}
DIMMABLE = [n for n in LIGHTS if n not in ("hallway light", "garage light")]
COLOURED = ["counter strip", "living room lamp", "bedroom lamp", "bedroom ceiling light", "desk lamp", "night light"]
ROOM_LIGHTS = {
    "Kitchen": ["light.counter_strip", "light.kitchen_lights"],
    "Living Room": ["light.living_room_lamp", "light.reading_lamp"],
    "Dining Room": ["light.dining_table_light"], "Hallway": ["light.hallway_light"],
    "Bedroom": ["light.bedroom_ceiling_light", "light.bedroom_lamp"],
    "Office": ["light.desk_lamp", "light.office_ceiling_light"], "Bathroom": ["light.bathroom_mirror_light"],
    "Kids Room": ["light.night_light"], "Garden": ["light.garden_lights"], "Garage": ["light.garage_light"],
}

Expected = frozenset  # of (entity id, action); empty: it must do nothing


def _do(*pairs: tuple[str, str]) -> Expected:
    return frozenset(pairs)


def template_sentences() -> list[tuple[str, Expected]]:
    """The requests Home Assistant's templates cover."""
    said: list[tuple[str, Expected]] = []
    for name, entity in {**LIGHTS, **SWITCHES, **FANS}.items():
        said.append((f"turn on the {name}", _do((entity, "turn_on"))))
        said.append((f"turn off the {name}", _do((entity, "turn_off"))))
    for room, lights in ROOM_LIGHTS.items():
        said.append((f"turn on the lights in the {room.lower()}", _do(*((e, "turn_on") for e in lights))))
        # A device called "<room> lights" is what that name means (as in Home Assistant).
        named = LIGHTS.get(f"{room.lower()} lights")
        meant = [named] if named else lights
        said.append((f"turn off the {room.lower()} lights", _do(*((e, "turn_off") for e in meant))))
    floor_lights = {floor: [e for area in areas for e in ROOM_LIGHTS[area]] for floor, areas in FLOORS.items()}
    said += [
        ("turn off the lights on the ground floor", _do(*((e, "turn_off") for e in floor_lights["Ground floor"]))),
        ("turn on all the lights on the first floor", _do(*((e, "turn_on") for e in floor_lights["First floor"]))),
        ("turn off the lights upstairs", _do(*((e, "turn_off") for e in floor_lights["First floor"]))),
        ("turn on the lights downstairs", _do(*((e, "turn_on") for e in floor_lights["Ground floor"]))),
        ("turn on the lights in the lounge", _do(*((e, "turn_on") for e in ROOM_LIGHTS["Living Room"]))),
    ]
    for index, name in enumerate(DIMMABLE):
        percent = (20, 40, 60, 80)[index % 4]
        said.append((f"set the {name} to {percent} percent", _do((LIGHTS[name], "set_brightness"))))
    for name, colour in zip(COLOURED, ("red", "blue", "green", "purple", "orange", "yellow")):
        said.append((f"set the {name} to {colour}", _do((LIGHTS[name], "set_color"))))
    for name, entity in COVERS.items():
        said.append((f"open the {name}", _do((entity, "open"))))
        said.append((f"close the {name}", _do((entity, "close"))))
        said.append((f"set the {name} position to 30%", _do((entity, "set_position"))))
    for name, entity in FANS.items():
        if entity != "fan.bathroom_extractor" and entity != "fan.bedroom_fan":
            said.append((f"set the {name} speed to 50%", _do((entity, "set_percentage"))))
    said += [
        ("set the bedroom fan speed to 100%", _do(("fan.bedroom_fan", "set_percentage"))),
        ("set the living room thermostat to 21 degrees", _do(("climate.living_room_thermostat", "set_temperature"))),
        ("set the bedroom radiator to 19.5 degrees", _do(("climate.bedroom_radiator", "set_temperature"))),
        ("unlock the front door", _do(("lock.front_door", "unlock"))),
        ("lock the front door", _do(("lock.front_door", "lock"))),
        ("open the garage door", _do(("cover.garage_door", "open"))),
        ("close the garage door", _do(("cover.garage_door", "close"))),
        # Names as people say them.
        ("turn on the kitchen light", _do(("light.kitchen_lights", "turn_on"))),
        ("turn off the garden light", _do(("light.garden_lights", "turn_off"))),
        ("turn on the book light", _do(("light.reading_lamp", "turn_on"))),
        ("turn off the bedroom lamps", _do(("light.bedroom_lamp", "turn_off"))),
        # Questions: answered, nothing done.
        ("is the kitchen light on", _do()),
        ("is the front door locked", _do()),
        ("what is the bathroom sensor humidity", _do()),
        ("is the garage door open", _do()),
        ("what time is it", _do()),
    ]
    return said


FREE_SENTENCES: list[tuple[str, Expected]] = [
    ("it is too dark in the dining room", _do(("light.dining_table_light", "turn_on"))),
    ("I'm going to sleep, the bedroom lamp can go off", _do(("light.bedroom_lamp", "turn_off"))),
    ("the plants need water, start the garden pump", _do(("switch.garden_pump", "turn_on"))),
    ("it is hot in here, get the bedroom fan going",
     _do(("fan.bedroom_fan", "turn_on"), ("fan.bedroom_fan", "set_percentage"))),
    ("let some daylight into the dining room", _do(("cover.dining_room_blinds", "open"),
                                                    ("cover.dining_room_blinds", "set_position"))),
    ("warm the living room thermostat up to 22 degrees", _do(("climate.living_room_thermostat", "set_temperature"))),
    ("nobody is in the hallway, the hallway light can go off", _do(("light.hallway_light", "turn_off"))),
    ("make the desk lamp dimmer, say 20 percent", _do(("light.desk_lamp", "set_brightness"))),
    ("the coffee machine should be on", _do(("switch.coffee_machine", "turn_on"))),
    ("please kill the tv plug", _do(("switch.tv_plug", "turn_off"))),
    ("crank the ceiling fan up to full", _do(("fan.ceiling_fan", "set_percentage"), ("fan.ceiling_fan", "turn_on"))),
    ("the bathroom extractor can stop now", _do(("fan.bathroom_extractor", "turn_off"))),
    ("put the night light on for the kids", _do(("light.night_light", "turn_on"))),
    ("bedroom radiator to 19 degrees please", _do(("climate.bedroom_radiator", "set_temperature"))),
    ("could the office ceiling light be switched off", _do(("light.office_ceiling_light", "turn_off"))),
    ("the counter strip should glow red", _do(("light.counter_strip", "set_color"))),
    ("printer plug off, I'm done printing", _do(("switch.printer_plug", "turn_off"))),
    ("I want the kids room blinds shut", _do(("cover.kids_room_blinds", "close"),
                                              ("cover.kids_room_blinds", "set_position"))),
    ("first floor lights off", _do(*((e, "turn_off") for a in FLOORS["First floor"] for e in ROOM_LIGHTS[a]))),
    ("the garden lights should be on", _do(("light.garden_lights", "turn_on"))),
]

# Nothing is named clearly (several devices fit, or none): it must do nothing.
AMBIGUOUS_SENTENCES: list[tuple[str, Expected]] = [(text, _do()) for text in (
    "turn on the light", "turn off the fan", "open the blinds", "turn it off", "make it warmer",
    "it is cold in the hallway", "set it to 50 percent", "switch something on", "close it", "the lamp",
    "what is the capital of France", "tell me a joke", "turn on the plug", "dim the lights",
    "do something about the noise",
)]


def sentences() -> list[tuple[str, Expected]]:
    return template_sentences() + FREE_SENTENCES + AMBIGUOUS_SENTENCES
