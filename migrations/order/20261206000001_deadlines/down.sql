DROP INDEX orders_pending_deadline;
ALTER TABLE orders DROP COLUMN traceparent;
ALTER TABLE orders DROP COLUMN deadline_at;
