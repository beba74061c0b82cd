//! Embedded migrations, applied in order on open. Never edit one that has shipped: add another.

/// The call log.
pub const CALL_LOG: &[&str] = &[
    r#"
CREATE TABLE agencies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redaction_enabled INTEGER NOT NULL DEFAULT 0,
    max_retention_days INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    agency_id TEXT NOT NULL REFERENCES agencies(id),
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_agency ON accounts (agency_id);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL,
    agency_id TEXT REFERENCES agencies(id),
    account_id TEXT REFERENCES accounts(id),
    personal_data INTEGER NOT NULL,
    label TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    external_id TEXT,
    started_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    utm_source TEXT,
    utm_medium TEXT,
    utm_campaign TEXT,
    visitor BLOB,
    redacted_at INTEGER,
    redaction_reason TEXT
);
CREATE UNIQUE INDEX sessions_external ON sessions (account_id, external_id);

CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    external_id TEXT,
    started_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    duration_s INTEGER,
    direction TEXT,
    status TEXT,
    tracking_number TEXT NOT NULL,
    source TEXT,
    campaign TEXT,
    utm_source TEXT,
    utm_medium TEXT,
    utm_campaign TEXT,
    gdpr_scope INTEGER,
    caller_bidx BLOB,
    session_id TEXT REFERENCES sessions(id),
    caller_identity BLOB,
    caller_location BLOB,
    transcript BLOB,
    interaction BLOB,
    recording_object TEXT,
    recording_content_type TEXT,
    recording_bytes INTEGER,
    redacted_at INTEGER,
    redaction_reason TEXT,
    redacted_by TEXT
);
CREATE UNIQUE INDEX calls_external ON calls (account_id, external_id);
CREATE INDEX calls_log ON calls (account_id, started_at, id);
CREATE INDEX calls_caller ON calls (account_id, caller_bidx) WHERE caller_bidx IS NOT NULL;
CREATE INDEX calls_tracking ON calls (account_id, tracking_number, started_at);
CREATE INDEX calls_source ON calls (account_id, source, started_at);
"#,
    r#"
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    agency_id TEXT,
    account_id TEXT,
    subject TEXT,
    count INTEGER,
    reason TEXT,
    details TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_account ON audit_log (account_id, seq);
CREATE INDEX audit_agency ON audit_log (agency_id, seq);

CREATE TABLE forget_list (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    caller_bidx BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, caller_bidx)
) WITHOUT ROWID;

CREATE TABLE redaction_jobs (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    call_ids TEXT NOT NULL,
    session_ids TEXT NOT NULL,
    objects TEXT NOT NULL,
    forget TEXT NOT NULL,
    audit_actor TEXT NOT NULL,
    audit_action TEXT NOT NULL,
    audit_agency TEXT,
    audit_account TEXT,
    audit_subject TEXT,
    audit_reason TEXT,
    audit_details TEXT NOT NULL,
    categories TEXT NOT NULL DEFAULT ''
);

ALTER TABLE accounts ADD COLUMN retention_days INTEGER;
ALTER TABLE accounts ADD COLUMN retention_scope TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE accounts ADD COLUMN retention_categories TEXT NOT NULL DEFAULT '';

ALTER TABLE calls ADD COLUMN legal_hold_at INTEGER;
ALTER TABLE calls ADD COLUMN legal_hold_reason TEXT;
ALTER TABLE calls ADD COLUMN legal_hold_by TEXT;

-- The calls automatic redaction may still touch, by age: the sweep reads due calls from
-- this index instead of scanning the table, and redacted or held calls leave it.
CREATE INDEX calls_live ON calls (account_id, started_at) WHERE redacted_at IS NULL AND legal_hold_at IS NULL;
"#,
    r#"
-- Consent and minimisation.
ALTER TABLE sessions ADD COLUMN gdpr_scope INTEGER;
ALTER TABLE sessions ADD COLUMN visitor_bidx BLOB;
CREATE INDEX sessions_visitor ON sessions (account_id, visitor_bidx) WHERE visitor_bidx IS NOT NULL;
CREATE INDEX calls_session ON calls (session_id) WHERE session_id IS NOT NULL;

-- Notices: a version is immutable once a consent event refers to it (used_at set).
CREATE TABLE notices (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    category TEXT NOT NULL,
    version INTEGER NOT NULL,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (account_id, category, version)
) WITHOUT ROWID;

-- The consent ledger: append-only; rows leave only with their subject's redaction.
CREATE TABLE consents (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    subject_kind TEXT NOT NULL,
    subject_bidx BLOB NOT NULL,
    subject BLOB NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    notice_version INTEGER,
    method TEXT NOT NULL,
    at INTEGER NOT NULL,
    call_id TEXT,
    recorded_by TEXT NOT NULL
);
CREATE INDEX consents_subject ON consents (account_id, subject_bidx, seq);
CREATE INDEX consents_call ON consents (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX consents_account ON consents (account_id, seq);

ALTER TABLE redaction_jobs ADD COLUMN subjects TEXT NOT NULL DEFAULT '';
"#,
    r#"
-- Telephony: the provider's auth token, sealed with the account's secrets key.
ALTER TABLE accounts ADD COLUMN twilio_auth_token BLOB;
"#,
    r#"
ALTER TABLE accounts ADD COLUMN twilio_delete_recordings INTEGER NOT NULL DEFAULT 0;

-- Recordings to fetch from the provider: a durable queue with retries (ids and URLs only).
CREATE TABLE recording_downloads (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    call_sid TEXT NOT NULL,
    recording_sid TEXT NOT NULL,
    url TEXT NOT NULL,
    provider_account TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    outcome TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX recording_downloads_sid ON recording_downloads (account_id, recording_sid);
CREATE INDEX recording_downloads_due ON recording_downloads (next_attempt_at) WHERE state = 'pending';
"#,
    r#"
-- When each background job last finished a run: the checklist's heartbeat (names and times only).
CREATE TABLE job_runs (
    name TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Recipients (GDPR Art. 19) and the durable outbox of their deliveries. The secret is sealed
-- with the account's secrets key. A delivery's payload holds ids only; a `call.created`
-- delivery holds none and is rendered from the sealed call when it is sent, so nothing
-- personal waits here in the clear and a redaction leaves nothing behind to send.
CREATE TABLE recipients (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    secret BLOB NOT NULL,
    events TEXT NOT NULL,
    personal_data INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    disabled_at INTEGER
);
CREATE INDEX recipients_account ON recipients (account_id, created_at);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    recipient_id TEXT NOT NULL REFERENCES recipients(id),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    call_id TEXT,
    payload TEXT,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    done_at INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE INDEX deliveries_recipient ON deliveries (recipient_id, id);
CREATE INDEX deliveries_call ON deliveries (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX deliveries_dead ON deliveries (account_id) WHERE state = 'dead';
"#,
    // web UI: users and sessions
    r#"
-- People who sign in to the web interface: found by a keyed hash of the e-mail address (no
-- address in the clear), argon2id password hashes, a failed-attempt counter for lockout.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email_index BLOB NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    agency_id TEXT REFERENCES agencies(id),
    account_id TEXT REFERENCES accounts(id),
    personal_data INTEGER NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at INTEGER NOT NULL
);

-- Signed-in browser sessions: the SHA-256 of the cookie value, never the value.
CREATE TABLE web_sessions (
    hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_user ON web_sessions (user_id);
"#,
    r#"
-- The sweep's index no longer changes when a call is redacted by hand: taking each call of
-- a caller out of it cost one scattered index page per call, as much again as clearing the
-- rows. A call leaves it when automatic redaction redacts it, or when the sweep passes a
-- call redacted otherwise (`swept`); the due-calls query skips redacted calls meanwhile.
ALTER TABLE calls ADD COLUMN swept INTEGER;
UPDATE calls SET swept = 1 WHERE redacted_at IS NOT NULL;
DROP INDEX calls_live;
CREATE INDEX calls_live ON calls (account_id, started_at) WHERE swept IS NULL AND legal_hold_at IS NULL;
"#,
    r#"
-- Telephony: the account's own Twilio Account SID (not a secret). Recording downloads send
-- the auth token only for a callback naming this SID.
ALTER TABLE accounts ADD COLUMN twilio_account_sid TEXT;
"#,
    r#"
-- Tokens and users that can be taken away: when a token was last used (written at most once
-- a minute per token), when a user was disabled (a disabled user cannot sign in and has no
-- session) and last signed in.
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE users ADD COLUMN last_sign_in_at INTEGER;
"#,
    r#"
-- A user's e-mail address sealed with the installation's user-e-mail key (in the vault), so
-- the pages can name people to those who may see it; users made before have none (shown by id).
ALTER TABLE users ADD COLUMN email_sealed BLOB;
"#,
];

/// The vault: wrapped data keys only.
pub const VAULT: &[&str] = &[
    r#"
CREATE TABLE data_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- The audit journal's head, kept apart from the journal: deleting its last entries, or
-- rewriting the whole chain, no longer verifies.
CREATE TABLE journal_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    at INTEGER NOT NULL
);
"#,
    r#"
-- Which master key wraps each data key (its fingerprint). NULL: the vault's first master key,
-- from before fingerprints were recorded; the first process to open the vault with its key
-- fills them in (`adopt_master_key`).
ALTER TABLE data_keys ADD COLUMN master TEXT;
-- The master keys the vault has known, by fingerprint: at most one active, at most one next
-- (the target of a rotation under way); the others are retired and wrap no row.
CREATE TABLE master_keys (
    fingerprint TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'next', 'retired')),
    since INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX master_keys_one_per_live_state ON master_keys (state)
    WHERE state IN ('active', 'next');
CREATE TABLE rotations (
    id INTEGER PRIMARY KEY,
    from_key TEXT NOT NULL,
    to_key TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    rewrapped INTEGER NOT NULL DEFAULT 0
);
"#,
];
