DROP TABLE closed_sagas;
