"""The abbreviated keys of Home Assistant MQTT discovery configs and their full names, for the
components the assistant reads (``cmd_t`` -> ``command_topic``). Devices such as Tasmota send
only abbreviations to keep their payloads small; `discovery.expand` writes them out.
"""

# Abbreviated discovery keys -> full keys: the ones that matter for the components we read.
ABBREVIATIONS = {
    # common
    "~": "~", "name": "name", "uniq_id": "unique_id", "obj_id": "object_id",
    "def_ent_id": "default_entity_id", "dev": "device", "o": "origin", "p": "platform",
    "cmps": "components", "dev_cla": "device_class", "ent_cat": "entity_category",
    "qos": "qos", "ret": "retain", "opt": "optimistic", "ic": "icon", "en": "enabled_by_default",
    "e": "encoding", "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
    "unit_of_meas": "unit_of_measurement", "stat_cla": "state_class", "exp_aft": "expire_after",
    "frc_upd": "force_update", "sug_dsp_prc": "suggested_display_precision",
    # availability
    "avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
    "avty_tpl": "availability_template", "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available", "t": "topic", "val_tpl": "value_template",
    # command and state
    "cmd_t": "command_topic", "cmd_tpl": "command_template", "stat_t": "state_topic",
    "stat_tpl": "state_template", "stat_val_tpl": "state_value_template",
    "pl_on": "payload_on", "pl_off": "payload_off", "stat_on": "state_on", "stat_off": "state_off",
    "pl_prs": "payload_press", "pl_open": "payload_open", "pl_cls": "payload_close",
    "pl_stop": "payload_stop", "pl_lock": "payload_lock", "pl_unlk": "payload_unlock",
    "pl_arm_away": "payload_arm_away", "pl_arm_home": "payload_arm_home",
    "pl_arm_nite": "payload_arm_night", "pl_disarm": "payload_disarm",
    "stat_open": "state_open", "stat_opening": "state_opening", "stat_clsd": "state_closed",
    "stat_closing": "state_closing", "stat_stopped": "state_stopped",
    "stat_locked": "state_locked", "stat_unlocked": "state_unlocked",
    "stat_locking": "state_locking", "stat_unlocking": "state_unlocking",
    "stat_jam": "state_jammed", "cod_form": "code_format", "code": "code",
    # light
    "schema": "schema", "bri_cmd_t": "brightness_command_topic",
    "bri_cmd_tpl": "brightness_command_template", "bri_stat_t": "brightness_state_topic",
    "bri_val_tpl": "brightness_value_template", "bri_scl": "brightness_scale", "bri": "brightness",
    "clr_temp_cmd_t": "color_temp_command_topic", "clr_temp_cmd_tpl": "color_temp_command_template",
    "clr_temp_stat_t": "color_temp_state_topic", "clr_temp_val_tpl": "color_temp_value_template",
    "clr_temp": "color_temp", "clr_temp_k": "color_temp_kelvin", "min_mirs": "min_mireds",
    "max_mirs": "max_mireds", "min_k": "min_kelvin", "max_k": "max_kelvin",
    "rgb_cmd_t": "rgb_command_topic", "rgb_cmd_tpl": "rgb_command_template",
    "rgb_stat_t": "rgb_state_topic", "rgb_val_tpl": "rgb_value_template",
    "sup_clrm": "supported_color_modes", "clrm": "color_mode", "on_cmd_type": "on_command_type",
    "fx_list": "effect_list", "cmd_on_tpl": "command_on_template", "cmd_off_tpl": "command_off_template",
    # fan
    "pct_cmd_t": "percentage_command_topic", "pct_cmd_tpl": "percentage_command_template",
    "pct_stat_t": "percentage_state_topic", "pct_val_tpl": "percentage_value_template",
    "spd_rng_min": "speed_range_min", "spd_rng_max": "speed_range_max",
    "pl_rst_pct": "payload_reset_percentage",
    # cover and valve
    "pos_t": "position_topic", "pos_tpl": "position_template", "set_pos_t": "set_position_topic",
    "set_pos_tpl": "set_position_template", "pos_open": "position_open",
    "pos_clsd": "position_closed", "rpt_pos": "reports_position",
    # climate
    "temp_cmd_t": "temperature_command_topic", "temp_cmd_tpl": "temperature_command_template",
    "temp_stat_t": "temperature_state_topic", "temp_stat_tpl": "temperature_state_template",
    "curr_temp_t": "current_temperature_topic", "curr_temp_tpl": "current_temperature_template",
    "mode_cmd_t": "mode_command_topic", "mode_cmd_tpl": "mode_command_template",
    "mode_stat_t": "mode_state_topic", "mode_stat_tpl": "mode_state_template", "modes": "modes",
    "min_temp": "min_temp", "max_temp": "max_temp", "temp_step": "temp_step",
    "temp_unit": "temperature_unit", "precision": "precision",
    "pow_cmd_t": "power_command_topic", "pow_cmd_tpl": "power_command_template",
    # light colour modes beyond rgb, and the template schema
    "hs_cmd_t": "hs_command_topic", "hs_cmd_tpl": "hs_command_template", "hs_stat_t": "hs_state_topic",
    "hs_val_tpl": "hs_value_template", "xy_cmd_t": "xy_command_topic", "xy_cmd_tpl": "xy_command_template",
    "xy_stat_t": "xy_state_topic", "xy_val_tpl": "xy_value_template",
    "rgbw_cmd_t": "rgbw_command_topic", "rgbw_cmd_tpl": "rgbw_command_template",
    "rgbw_stat_t": "rgbw_state_topic", "rgbw_val_tpl": "rgbw_value_template",
    "rgbww_cmd_t": "rgbww_command_topic", "rgbww_cmd_tpl": "rgbww_command_template",
    "rgbww_stat_t": "rgbww_state_topic", "rgbww_val_tpl": "rgbww_value_template",
    "clrm_stat_t": "color_mode_state_topic", "clrm_val_tpl": "color_mode_value_template",
    "fx_cmd_t": "effect_command_topic", "fx_cmd_tpl": "effect_command_template",
    "fx_stat_t": "effect_state_topic", "fx_val_tpl": "effect_value_template",
    "bri_tpl": "brightness_template", "r_tpl": "red_template", "g_tpl": "green_template",
    "b_tpl": "blue_template", "clr_temp_tpl": "color_temp_template",
    # cover tilt
    "tilt_cmd_t": "tilt_command_topic", "tilt_cmd_tpl": "tilt_command_template",
    "tilt_status_t": "tilt_status_topic", "tilt_status_tpl": "tilt_status_template",
    "tilt_clsd_val": "tilt_closed_value", "tilt_opnd_val": "tilt_opened_value",
    "tilt_min": "tilt_min", "tilt_max": "tilt_max",
    # presets (fan, climate)
    "pr_mode_cmd_t": "preset_mode_command_topic", "pr_mode_cmd_tpl": "preset_mode_command_template",
    "pr_mode_stat_t": "preset_mode_state_topic", "pr_mode_val_tpl": "preset_mode_value_template",
    "pr_modes": "preset_modes",
    "act_t": "action_topic", "act_tpl": "action_template",
}
DEVICE_ABBREVIATIONS = {
    "ids": "identifiers", "cns": "connections", "name": "name", "mf": "manufacturer",
    "mdl": "model", "mdl_id": "model_id", "sw": "sw_version", "hw": "hw_version",
    "sa": "suggested_area", "cu": "configuration_url", "via_device": "via_device",
}
ORIGIN_ABBREVIATIONS = {"name": "name", "sw": "sw_version", "url": "support_url"}
