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


@pytest.mark.parametrize("text, message", [
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
