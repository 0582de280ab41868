"""`edge-assistant home`: the devices on the broker as a user lists them."""

import json
import os
import subprocess
import sys


def run(*args, config, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_assistant.cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def write_config(tmp_path, broker, home="expose = ['Kitchen', 'lock.front_door']\n"):
    path = tmp_path / "home.toml"
    path.write_text(f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\ndevice_id = 'cli-test'\n"
                    f"[home]\n{home}")
    return path


def test_home_lists_discovered_and_declared_devices(tmp_path, mosquitto, home_devices):
    devices = home_devices(mosquitto)
    devices.zigbee_light()
    devices.door_lock()
    config = write_config(tmp_path, mosquitto, "expose = ['Kitchen', 'lock.front_door']\n"
                          "[[home.devices]]\nname = 'Desk Lamp'\narea = 'Office'\ncommand_topic = 'desk/set'\n")
    result = run("home", "--json", config=config)
    assert result.returncode == 0, result.stderr
    rows = {row["entity_id"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"light.kitchen_ceiling", "sensor.kitchen_ceiling_linkquality", "lock.front_door", "switch.desk_lamp"}
    light = rows["light.kitchen_ceiling"]
    assert (light["area"], light["domain"], light["exposed"], light["available"]) == ("Kitchen", "light", True, True)
    assert light["state"]["state"] == "off"
    assert rows["lock.front_door"]["needs_confirmation"] and rows["lock.front_door"]["state"] == {"state": "locked"}
    assert not rows["switch.desk_lamp"]["exposed"] and rows["switch.desk_lamp"]["source"] == "config:0"
    text = run("home", config=config)
    assert text.returncode == 0
    assert 'lock.front_door  "Front Door"  area=Hall  lock  exposed=yes, with a spoken yes  state=locked' in text.stdout
    assert "# 4 entities, 3 exposed" in text.stderr


def test_home_without_a_broker_fails_with_one_line(tmp_path, mosquitto):
    config = write_config(tmp_path, mosquitto)
    mosquitto.kill()
    result = run("home", "--wait", "1", config=config)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"edge-assistant: cannot reach the MQTT broker {mosquitto.host}:{mosquitto.port}"


def test_prompt_shows_the_device_and_tool_part(tmp_path, mosquitto, home_devices, tiny_gguf):
    home_devices(mosquitto).zigbee_light()
    config = write_config(tmp_path, mosquitto, "expose = ['Kitchen']\n"
                          "[[home.areas]]\nname = 'Kitchen'\nfloor = 'First floor'\n"
                          f"[llm]\nmodel = '{tiny_gguf}'\nn_ctx = 2048\n"
                          f"[service]\nstate_dir = '{tmp_path / 'state'}'\n")
    result = run("prompt", "--grammar", "turn on the kitchen ceiling", config=config)
    assert result.returncode == 0, result.stderr
    assert "Devices (id; name; area (floor); type; actions):" in result.stdout
    assert ("light.kitchen_ceiling; Kitchen Ceiling; Kitchen (First floor); light; "
            "turn_on, turn_off, toggle, set_brightness, set_color, set_color_temp, get_state") in result.stdout
    assert "turn on the kitchen ceiling" in result.stdout
    assert 'id-turn-on ::= "\\"light.kitchen_ceiling\\""' in result.stdout
    assert "# tools for this request: " in result.stderr and "turn_on" in result.stderr
