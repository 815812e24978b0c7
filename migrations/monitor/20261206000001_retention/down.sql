DROP INDEX saga_events_without_saga;
DROP INDEX sagas_ended;
