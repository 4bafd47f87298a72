"""MQTT: the bridge's connection (:mod:`.bridge`), its topic names, wire payloads and Home Assistant
discovery. paho is imported only when MQTT is configured."""
