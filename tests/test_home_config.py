"""The [home] table and its [[home.devices]] array of tables."""

import pytest

from edge_assistant import config as config_module
from edge_assistant.config import ConfigError
from edge_assistant.home.entities import DOMAINS


def load_text(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config_module.load(path, environ={})


def test_declared_devices_load_as_frozen_tables(tmp_path):
    config = load_text(tmp_path, """
[home]
expose = ["kitchen", "lock.front_door"]
[[home.devices]]
name = "Desk lamp"
area = "Office"
command_topic = "cmnd/desk/POWER"
[[home.devices]]
name = "Porch"
component = "light"
state_topic = "porch/state"
""")
    assert config.home.expose == ("kitchen", "lock.front_door")
    lamp, porch = config.home.devices
    assert (lamp.name, lamp.component, lamp.area, lamp.command_topic) == ("Desk lamp", "switch", "Office", "cmnd/desk/POWER")
    assert porch.component == "light" and porch.state_topic == "porch/state"


def test_areas_floors_and_aliases(tmp_path):
    config = load_text(tmp_path, """
[[home.areas]]
name = "Kitchen"
floor = "First floor"
aliases = ["cooking area"]
[[home.floors]]
name = "First floor"
aliases = ["downstairs"]
[[home.aliases]]
name = "light.kitchen_ceiling"
aliases = ["cooker light", "big light"]
""")
    (kitchen,) = config.home.areas
    assert (kitchen.name, kitchen.floor, kitchen.aliases) == ("Kitchen", "First floor", ("cooking area",))
    assert config.home.floors[0].aliases == ("downstairs",)
    assert config.home.aliases[0].aliases == ("cooker light", "big light")


@pytest.mark.parametrize("text, message", [
    ("[[home.areas]]\nfloor = 'x'\n", "home.areas[0].name: an area needs a name"),
    ("[[home.areas]]\nname = 'Kitchen'\n[[home.areas]]\nname = 'kitchen'\n", "home.areas: names the same area twice"),
    ("[[home.areas]]\nname = 'Kitchen'\naliases = 'cooker'\n", "home.areas[0].aliases: must be a list of strings"),
    ("[[home.areas]]\nname = 'Kitchen'\naliases = ['']\n", "home.areas[0].aliases: must be at most 16 names"),
    ("[[home.floors]]\nname = 'Up'\n[[home.floors]]\nname = 'up'\n", "home.floors: names the same floor twice"),
    ("[[home.aliases]]\nname = 'light.x'\n", "home.aliases[0].aliases: an alias entry needs at least one alias"),
    ("[home]\nareas = ['Kitchen']\n", "home.areas: must be an array of tables"),

    ("[home]\nconfirm_timeout_s = 0\n", "home.confirm_timeout_s: must be between"),
    ("[home]\nexpose = 'kitchen'\n", "home.expose: must be a list of strings"),
    ("[home]\ndevices = ['lamp']\n", "home.devices: must be an array of tables"),
    ("[[home.devices]]\nname = 'x'\ncommand_topic = 'a/+/b'\n", "home.devices[0].command_topic: must be an MQTT topic without wildcards"),
    ("[[home.devices]]\nname = 'x'\n", "home.devices[0].command_topic: a device needs a command_topic or a state_topic"),
    ("[[home.devices]]\ncommand_topic = 'a'\n", "home.devices[0].name: a device needs a name"),
    ("[[home.devices]]\nname = 'x'\ncommand_topic = 'a'\n[[home.devices]]\nname = 'y'\ncomponent = 'toaster'\n",
     "home.devices[1].component: must be one of"),
    ("[[home.devices]]\nname = 'x'\ncommand_topic = 'a'\ncolour = 'red'\n", "home.devices[0].colour: unknown key"),
    ("[[home.devices]]\nname = 'x'\ncommand_topic = 'a'\nentity_id = 'Kitchen Light'\n", "home.devices[0].entity_id: must look like"),
])
def test_bad_home_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_text(tmp_path, text)
    assert message in str(error.value)


def test_declarable_components_are_the_understood_ones():
    assert config_module.HOME_COMPONENTS == DOMAINS
