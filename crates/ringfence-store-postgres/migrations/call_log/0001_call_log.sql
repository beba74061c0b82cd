-- The call log on PostgreSQL: the SQLite schema's tables as they stand today, in one step.
--
-- Distribution: every table of tenant data has `account_id` leading its primary key and
-- each unique key, and refers to other tenant tables through `(account_id, …)`, so that
-- Citus can distribute them by `account_id` unchanged. Agencies and accounts are small
-- reference tables; installation-level tables (tokens, users, the journal, job runs,
-- redaction jobs) stay on the coordinator. Timestamps are milliseconds since the epoch.

CREATE TABLE agencies (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    redaction_enabled boolean NOT NULL DEFAULT false,
    max_retention_days bigint CHECK (max_retention_days > 0),
    created_at bigint NOT NULL
);

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    agency_id uuid NOT NULL REFERENCES agencies (id),
    name text NOT NULL,
    -- What the account collects, one typed column per setting.
    collect_caller_name boolean NOT NULL,
    collect_caller_location boolean NOT NULL,
    recording_gdpr text NOT NULL CHECK (recording_gdpr IN ('off', 'announce', 'opt_in')),
    recording_other text NOT NULL CHECK (recording_other IN ('off', 'announce', 'opt_in')),
    collect_transcription boolean NOT NULL,
    visitor_ip text NOT NULL CHECK (visitor_ip IN ('drop', 'truncate', 'full')),
    collect_visitor_details boolean NOT NULL,
    retention_days bigint,
    retention_scope text NOT NULL DEFAULT 'everyone' CHECK (retention_scope IN ('everyone', 'gdpr')),
    retention_categories text NOT NULL DEFAULT '',
    -- Sealed with the account's secrets key.
    twilio_auth_token bytea,
    twilio_delete_recordings boolean NOT NULL DEFAULT false,
    twilio_account_sid text,
    created_at bigint NOT NULL
);
CREATE INDEX accounts_agency ON accounts (agency_id);

CREATE TABLE tokens (
    id uuid PRIMARY KEY,
    hash bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    role text NOT NULL CHECK (role IN ('admin', 'agency_admin', 'account_admin', 'analyst', 'ingest')),
    agency_id uuid REFERENCES agencies (id),
    account_id uuid REFERENCES accounts (id),
    personal_data boolean NOT NULL,
    label text,
    created_at bigint NOT NULL,
    expires_at bigint,
    revoked_at bigint,
    last_used_at bigint,
    CHECK (account_id IS NULL OR agency_id IS NOT NULL)
);

CREATE TABLE sessions (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id uuid NOT NULL,
    external_id text,
    started_at bigint NOT NULL,
    created_at bigint NOT NULL,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    visitor bytea,
    gdpr_scope boolean,
    visitor_bidx bytea,
    redacted_at bigint,
    redaction_reason text CHECK (redaction_reason IN ('manual', 'caller', 'retention', 'consent_withdrawn', 'forget_list')),
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, external_id)
);
CREATE INDEX sessions_id ON sessions (id);
CREATE INDEX sessions_visitor ON sessions (account_id, visitor_bidx) WHERE visitor_bidx IS NOT NULL;

CREATE TABLE calls (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id uuid NOT NULL,
    external_id text,
    started_at bigint NOT NULL,
    created_at bigint NOT NULL,
    duration_s bigint CHECK (duration_s >= 0),
    direction text CHECK (direction IN ('inbound', 'outbound')),
    status text CHECK (status IN ('queued', 'initiated', 'ringing', 'in-progress', 'completed', 'busy', 'no-answer', 'canceled', 'failed')),
    tracking_number text NOT NULL,
    source text,
    campaign text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    gdpr_scope boolean,
    caller_bidx bytea,
    session_id uuid,
    caller_identity bytea,
    caller_location bytea,
    transcript bytea,
    interaction bytea,
    recording_object text,
    recording_content_type text,
    recording_bytes bigint,
    redacted_at bigint,
    redaction_reason text CHECK (redaction_reason IN ('manual', 'caller', 'retention', 'consent_withdrawn', 'forget_list')),
    redacted_by text,
    legal_hold_at bigint,
    legal_hold_reason text,
    legal_hold_by text,
    -- Set when the sweep no longer needs to see the call (see `calls_live`).
    swept boolean,
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, external_id),
    FOREIGN KEY (account_id, session_id) REFERENCES sessions (account_id, id)
);
-- Lookups by call id alone (fan-out queries under Citus) until call-level operations take
-- the account with the id (issue 20, item 1).
CREATE INDEX calls_id ON calls (id);
CREATE INDEX calls_log ON calls (account_id, started_at, id);
CREATE INDEX calls_caller ON calls (account_id, caller_bidx) WHERE caller_bidx IS NOT NULL;
CREATE INDEX calls_tracking ON calls (account_id, tracking_number, started_at);
CREATE INDEX calls_source ON calls (account_id, source, started_at);
CREATE INDEX calls_recording ON calls (recording_object) WHERE recording_object IS NOT NULL;
CREATE INDEX calls_session ON calls (account_id, session_id) WHERE session_id IS NOT NULL;
-- The calls automatic redaction may still touch, by age: the sweep reads due calls from this
-- index; a call leaves it when the sweep redacts it or passes it redacted otherwise.
CREATE INDEX calls_live ON calls (account_id, started_at) WHERE swept IS NULL AND legal_hold_at IS NULL;

-- The audit journal: one hash chain for the installation (a coordinator table under Citus).
CREATE TABLE audit_log (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    at bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    agency_id uuid,
    account_id uuid,
    subject text,
    count bigint,
    reason text,
    details text NOT NULL,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_account ON audit_log (account_id, seq);
CREATE INDEX audit_agency ON audit_log (agency_id, seq);

-- The chain's head: one row per chain, locked (`SELECT … FOR UPDATE`) by every append in
-- the appending transaction, so that concurrent writers extend one chain one at a time.
CREATE TABLE audit_head (
    chain text PRIMARY KEY CHECK (chain = 'journal'),
    seq bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    at bigint NOT NULL
);
INSERT INTO audit_head (chain, seq, hash, at) VALUES ('journal', 0, decode(repeat('00', 32), 'hex'), 0);

CREATE TABLE forget_list (
    account_id uuid NOT NULL REFERENCES accounts (id),
    caller_bidx bytea NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (account_id, caller_bidx)
);

-- Redactions under way (they may span the accounts of an agency): installation-level.
CREATE TABLE redaction_jobs (
    id text PRIMARY KEY,
    created_at bigint NOT NULL,
    reason text NOT NULL CHECK (reason IN ('manual', 'caller', 'retention', 'consent_withdrawn', 'forget_list')),
    call_ids uuid[] NOT NULL,
    session_ids uuid[] NOT NULL,
    objects text[] NOT NULL,
    -- Forget-list entries and consent subjects: (account, blind index) pairs, as two arrays.
    forget_accounts uuid[] NOT NULL,
    forget_bidx bytea[] NOT NULL,
    subject_accounts uuid[] NOT NULL,
    subject_bidx bytea[] NOT NULL,
    categories text[] NOT NULL,
    audit_actor text NOT NULL,
    audit_action text NOT NULL,
    audit_agency uuid,
    audit_account uuid,
    audit_subject text,
    audit_count bigint,
    audit_reason text,
    audit_details text NOT NULL,
    CHECK (cardinality(forget_accounts) = cardinality(forget_bidx)),
    CHECK (cardinality(subject_accounts) = cardinality(subject_bidx))
);
CREATE INDEX redaction_jobs_objects ON redaction_jobs USING gin (objects);

-- Notices: a version is immutable once a consent event refers to it (used_at set).
CREATE TABLE notices (
    account_id uuid NOT NULL REFERENCES accounts (id),
    category text NOT NULL CHECK (category IN ('call_facts', 'caller_identity', 'caller_location', 'recording', 'transcript', 'visitor', 'interaction_content')),
    version bigint NOT NULL CHECK (version > 0),
    text text NOT NULL,
    created_at bigint NOT NULL,
    used_at bigint,
    PRIMARY KEY (account_id, category, version)
);

-- The consent ledger: append-only; rows leave only with their subject's redaction.
CREATE TABLE consents (
    account_id uuid NOT NULL REFERENCES accounts (id),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text NOT NULL,
    subject_kind text NOT NULL CHECK (subject_kind IN ('caller', 'visitor')),
    subject_bidx bytea NOT NULL,
    subject bytea NOT NULL,
    category text NOT NULL CHECK (category IN ('call_facts', 'caller_identity', 'caller_location', 'recording', 'transcript', 'visitor', 'interaction_content')),
    status text NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    notice_version bigint,
    method text NOT NULL CHECK (method IN ('ivr_keypress', 'verbal', 'web_form', 'api')),
    at bigint NOT NULL,
    call_id uuid,
    recorded_by text NOT NULL,
    PRIMARY KEY (account_id, seq),
    UNIQUE (account_id, id)
);
CREATE INDEX consents_subject ON consents (account_id, subject_bidx, seq);
CREATE INDEX consents_call ON consents (account_id, call_id) WHERE call_id IS NOT NULL;

-- Recordings to fetch from the provider: a durable queue with retries (ids and URLs only).
CREATE TABLE recording_downloads (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id text NOT NULL,
    call_sid text NOT NULL,
    recording_sid text NOT NULL,
    url text NOT NULL,
    provider_account text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    attempts bigint NOT NULL CHECK (attempts >= 0),
    next_attempt_at bigint NOT NULL,
    outcome text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, recording_sid)
);
CREATE INDEX recording_downloads_due ON recording_downloads (next_attempt_at) WHERE state = 'pending';

-- When each background job last finished a run: the checklist's heartbeat.
CREATE TABLE job_runs (
    name text PRIMARY KEY,
    at bigint NOT NULL
);

-- Recipients (GDPR Art. 19) and the durable outbox of their deliveries (ids only).
CREATE TABLE recipients (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id uuid NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    secret bytea NOT NULL,
    events text[] NOT NULL CHECK (events <@ ARRAY['call.created', 'call.redacted', 'caller.erased', 'consent.withdrawn']),
    personal_data boolean NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    disabled_at bigint,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX recipients_account ON recipients (account_id, created_at);

CREATE TABLE deliveries (
    account_id uuid NOT NULL REFERENCES accounts (id),
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    event text NOT NULL CHECK (event IN ('call.created', 'call.redacted', 'caller.erased', 'consent.withdrawn')),
    recipient_id uuid NOT NULL,
    call_id uuid,
    payload text,
    created_at bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('queued', 'delivered', 'dead', 'cancelled')),
    attempts bigint NOT NULL DEFAULT 0,
    next_attempt_at bigint NOT NULL,
    last_attempt_at bigint,
    last_status integer,
    last_error text,
    done_at bigint,
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, recipient_id) REFERENCES recipients (account_id, id)
);
CREATE INDEX deliveries_id ON deliveries (id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE INDEX deliveries_recipient ON deliveries (account_id, recipient_id, id);
CREATE INDEX deliveries_call ON deliveries (account_id, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX deliveries_dead ON deliveries (account_id) WHERE state = 'dead';

-- People who sign in to the web interface (installation-level): found by a keyed hash of the
-- e-mail address, argon2id password hashes, a failed-attempt counter for lockout.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email_index bytea NOT NULL UNIQUE CHECK (length(email_index) = 16),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'agency_admin', 'account_admin', 'analyst', 'ingest')),
    agency_id uuid REFERENCES agencies (id),
    account_id uuid REFERENCES accounts (id),
    personal_data boolean NOT NULL,
    failed_logins bigint NOT NULL DEFAULT 0,
    locked_until bigint,
    created_at bigint NOT NULL,
    disabled_at bigint,
    last_sign_in_at bigint,
    CHECK (account_id IS NULL OR agency_id IS NOT NULL)
);

-- Signed-in browser sessions: the SHA-256 of the cookie value, never the value.
CREATE TABLE web_sessions (
    hash bytea PRIMARY KEY CHECK (length(hash) = 32),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at bigint NOT NULL,
    last_seen_at bigint NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
