DROP TABLE dlq_audit;
