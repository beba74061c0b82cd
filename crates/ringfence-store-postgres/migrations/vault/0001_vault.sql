-- The vault: wrapped data keys only, in a database of its own (a shorter backup policy than
-- the call log's). A destroyed key's row lives on in dead tuples until VACUUM: see
-- `PgVault::compact`.
CREATE TABLE data_keys (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('call', 'session', 'blind_index', 'subject', 'account_secret')),
    wrapped bytea NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX data_keys_purpose ON data_keys (purpose, created_at, id);

-- The audit journal's head, kept apart from the journal: deleting its last entries, or
-- rewriting the whole chain, no longer verifies.
CREATE TABLE journal_anchor (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash bytea NOT NULL CHECK (length(hash) = 32),
    at bigint NOT NULL
);
