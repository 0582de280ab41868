"""Acting on the home over MQTT: devices learnt from Home Assistant discovery, voice commands
matched by templates first and a grammar-bound LLM tool call second.

The pipeline uses `edge_assistant.home.assistant.HomeControl`; the LLM fallback
`edge_assistant.home.tools.Toolbox`. Modules, in the order data flows: entities, templates,
discovery_keys, discovery, states, places, registry, connection, intents, colors, outcomes, actions,
responses, grounding, tools, assistant.
"""
