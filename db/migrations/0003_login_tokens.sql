-- Customer login links: PUBLIC_BASE_URL/login/<token>, stored hashed, single-use.
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,                  -- sha256 of the token
    instance_id TEXT NOT NULL REFERENCES instances(id),
    customer_id TEXT NOT NULL REFERENCES customers(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX login_tokens_instance ON login_tokens(instance_id);
