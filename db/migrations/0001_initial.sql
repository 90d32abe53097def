-- The billing spine: customers, what they pay with (subscriptions, lifetime
-- purchases), their instances, the operations queue, the audit trail, every
-- Paddle event as received, and the notifications outbox.
-- Timestamps are ISO 8601 UTC text ('2026-11-24T12:00:00.000000Z').

CREATE TABLE customers (
    id TEXT PRIMARY KEY,                          -- cust_ + 12 [a-z0-9]
    email TEXT NOT NULL DEFAULT '',               -- empty until Paddle's API answers
    name TEXT,
    paddle_customer_id TEXT UNIQUE,               -- ctm_...
    contact_occurred_at TEXT,                     -- occurred_at of the last customer.* applied
    contact_synced_at TEXT,                       -- when Paddle's API last answered for it
    contact_attempts INTEGER NOT NULL DEFAULT 0,
    contact_next_attempt_at TEXT,
    onboarding_token_hash TEXT UNIQUE,            -- sha256 of the t.me/<bot>?start= token
    onboarding_token_used_at TEXT,                -- single-use for binding
    telegram_chat_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,                          -- Paddle's sub_...
    customer_id TEXT NOT NULL REFERENCES customers(id),
    plan TEXT NOT NULL,                           -- monthly
    status TEXT NOT NULL,                         -- active|trialing|past_due|paused|canceled
    price_ids TEXT NOT NULL DEFAULT '[]',         -- JSON list of the items' price ids
    occurred_at TEXT,                             -- of the last applied event (NULL: created by API)
    changed_at TEXT NOT NULL,                     -- our clock when the facts last changed
    past_due_since TEXT,
    paused_at TEXT,
    canceled_at TEXT,                             -- when the cancellation took effect
    refunded_at TEXT,                             -- approved full refund or chargeback
    scheduled_change TEXT,                        -- JSON {action, effective_at} or NULL
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE purchases (                          -- one-off lifetime purchases
    id TEXT PRIMARY KEY,                          -- Paddle's txn_...
    customer_id TEXT NOT NULL REFERENCES customers(id),
    price_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    refunded_at TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,                          -- inst_ + 12 [a-z0-9]
    customer_id TEXT NOT NULL REFERENCES customers(id),
    subscription_id TEXT REFERENCES subscriptions(id),
    purchase_id TEXT REFERENCES purchases(id),
    plan TEXT NOT NULL,                           -- monthly|lifetime|manual
    status TEXT NOT NULL DEFAULT 'provisioning',  -- provisioning|active|suspended|failed|destroyed
    desired_state TEXT NOT NULL DEFAULT 'active', -- active|suspended|destroyed
    desired_reason TEXT NOT NULL DEFAULT '',
    desired_since TEXT,
    next_deadline_at TEXT,                        -- when the policy must look again
    step TEXT,                                    -- the reconciler's current step
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT,
    hetzner_server_id INTEGER,
    server_ip TEXT,
    server_name TEXT NOT NULL,                    -- oc-<12 chars>: the idempotency key
    location TEXT,
    server_monthly_price_eur REAL,
    ssh_host_key TEXT,                            -- pinned public host key
    password_hash TEXT,                           -- the gateway password is never stored
    health_status TEXT NOT NULL DEFAULT 'unknown',
    last_health_check TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    healthy_since TEXT,
    muted_until TEXT,
    admin_hold TEXT,                              -- suspended|resumed
    hold_reason TEXT,
    hold_actor TEXT,
    hold_at TEXT,
    admin_destroyed_at TEXT,
    setup_sent_at TEXT,
    provision_log TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (subscription_id IS NULL OR purchase_id IS NULL)
);
CREATE INDEX instances_status ON instances(status);
CREATE INDEX instances_subscription ON instances(subscription_id);
CREATE INDEX instances_purchase ON instances(purchase_id);
CREATE INDEX instances_deadline ON instances(next_deadline_at);
-- A subscription or purchase has at most one instance that is not destroyed.
CREATE UNIQUE INDEX instances_live_subscription ON instances(subscription_id)
    WHERE subscription_id IS NOT NULL AND desired_state != 'destroyed';
CREATE UNIQUE INDEX instances_live_purchase ON instances(purchase_id)
    WHERE purchase_id IS NOT NULL AND desired_state != 'destroyed';

CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances(id),
    kind TEXT NOT NULL,                           -- restart_gateway|reboot|reprovision|retry|snapshot|upgrade
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',        -- pending|running|done|failed|canceled
    result TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX operations_pending ON operations(state, instance_id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT REFERENCES instances(id),
    customer_id TEXT REFERENCES customers(id),
    event_type TEXT NOT NULL,
    payload TEXT,                                 -- JSON, never a secret
    actor TEXT NOT NULL,                          -- paddle|api|tg:<id>|monitor|policy
    created_at TEXT NOT NULL
);
CREATE INDEX events_instance ON events(instance_id, id);

CREATE TABLE paddle_events (
    event_id TEXT PRIMARY KEY,                    -- evt_...: the replay guard
    event_type TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    notification_id TEXT,
    payload TEXT NOT NULL,                        -- the raw body as received
    received_at TEXT NOT NULL,
    processed_at TEXT,
    outcome TEXT,                                 -- applied|stale|ignored|stored
    error TEXT
);
CREATE INDEX paddle_events_unprocessed ON paddle_events(processed_at) WHERE processed_at IS NULL;

CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,                      -- ops | customer
    customer_id TEXT REFERENCES customers(id),
    instance_id TEXT REFERENCES instances(id),
    kind TEXT NOT NULL,
    body TEXT,                                    -- text to send, never a secret
    ref TEXT,                                     -- JSON reference rendered at send time
    status TEXT NOT NULL DEFAULT 'pending',       -- pending|sent|failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
