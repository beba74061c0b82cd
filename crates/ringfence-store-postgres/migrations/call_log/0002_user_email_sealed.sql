-- A user's e-mail address sealed with the installation's key (shown to administrators); the
-- blind index stays the lookup.
ALTER TABLE users ADD COLUMN email_sealed bytea;
