DELETE FROM dlq_audit WHERE operation = 'restore';
ALTER TABLE dlq_audit DROP CONSTRAINT dlq_audit_operation_check;
ALTER TABLE dlq_audit ADD CONSTRAINT dlq_audit_operation_check
    CHECK (operation IN ('replay', 'purge'));
DROP TABLE dlq_archive;
