DROP TABLE saga_events;
