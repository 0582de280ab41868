"""Shared fixtures live in tests/support/, one module per area."""

pytest_plugins = [
    "tests.support.llm_fixtures",
    "tests.support.speech_fixtures",
    "tests.support.mqtt_fixtures",
    "tests.support.llm_server_fixtures",
    "tests.support.daemon_fixtures",
    "tests.support.home_fixtures",
]
