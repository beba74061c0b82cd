-- Users' sealed e-mail addresses have keys of their own purpose (`user_email`).
ALTER TABLE data_keys DROP CONSTRAINT data_keys_purpose_check;
ALTER TABLE data_keys ADD CONSTRAINT data_keys_purpose_check
    CHECK (purpose IN ('call', 'session', 'blind_index', 'subject', 'account_secret', 'user_email'));
