-- Several hosts on one plan. A host holds a lease while it runs (renewed by its heartbeat); a job
-- is claimed by one host at a time (`claimed_by`, taken with SELECT ... FOR UPDATE SKIP LOCKED,
-- and taken over only once that host's lease has lapsed); once a job's key generation begins,
-- `key_host` pins the job to the host whose token holds the key, for good.
CREATE TABLE hosts (
    host_id TEXT PRIMARY KEY,
    lease_until TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN key_host TEXT;

CREATE INDEX jobs_unfinished_by_host ON jobs (claimed_by) WHERE state != 'done';
