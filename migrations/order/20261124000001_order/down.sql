DROP TRIGGER order_status_notify_after_update ON orders;
DROP FUNCTION order_status_notify();
DROP TABLE order_items;
DROP TABLE orders;
