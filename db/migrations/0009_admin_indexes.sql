-- Admin reads at fleet scale (bench/admin_scale.py): pages of instances newest first
-- (all, or of one status) walk an index instead of sorting the whole table; /status by
-- email finds the customer by index; a customer's instances are found by index.
CREATE INDEX instances_newest ON instances(created_at DESC, id);
CREATE INDEX instances_status_newest ON instances(status, created_at DESC, id);
CREATE INDEX instances_customer ON instances(customer_id);
CREATE INDEX customers_email_lower ON customers(lower(email));
