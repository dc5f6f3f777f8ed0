"""The broker: Mosquitto's configuration as central writes it, and central's own MQTT session."""
