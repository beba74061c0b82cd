-- Which master key wraps each data key (its fingerprint). NULL: the vault's first master key,
-- from before fingerprints were recorded; the first process to open the vault with its key
-- fills them in (`adopt_master_key`).
ALTER TABLE data_keys ADD COLUMN master text;
-- The master keys the vault has known, by fingerprint: at most one active, at most one next
-- (the target of a rotation under way); the others are retired and wrap no row.
CREATE TABLE master_keys (
    fingerprint text PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('active', 'next', 'retired')),
    since bigint NOT NULL
);
CREATE UNIQUE INDEX master_keys_one_per_live_state ON master_keys (state)
    WHERE state IN ('active', 'next');
CREATE TABLE rotations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_key text NOT NULL,
    to_key text NOT NULL,
    started_at bigint NOT NULL,
    finished_at bigint,
    rewrapped bigint NOT NULL DEFAULT 0
);
