DROP TABLE sagas;
