-- The journal of one plan: one row per job with its last completed step, and the history of
-- every step begun and ended (the same content as the SQLite journal).
CREATE TABLE journal_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE jobs (
    seq BIGSERIAL NOT NULL UNIQUE,
    job_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    key_id BYTEA NOT NULL,
    alternative_order_id TEXT NOT NULL,
    csr_pem TEXT,
    audit_json TEXT,
    order_id BIGINT,
    certificate_id BIGINT,
    chain_pem TEXT,
    note TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE history (
    seq BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT
);

CREATE INDEX history_by_job ON history (job_id, seq);
