-- The sweep reads due calls in (started_at, id) order. With `calls_live` on (account_id,
-- started_at) only, a plan made before statistics caught up with a sweep read them through
-- `calls_log`, passing every call already swept on each batch (quadratic over a sweep).
-- Holding id too, `calls_live` gives that order itself.
DROP INDEX calls_live;
CREATE INDEX calls_live ON calls (account_id, started_at, id) WHERE swept IS NULL AND legal_hold_at IS NULL;
