DROP TABLE balance_history;
DROP TABLE balances;
