//! The store stories, each once on SQLite and once on PostgreSQL.

ringfence_store_tests::store_stories!(
    agencies_and_accounts_keep_every_field_they_were_given,
    a_token_is_found_by_its_hash_and_revoked_once_with_one_journal_entry,
    concurrent_writers_extend_one_journal_chain,
    a_users_sessions_end_when_it_is_disabled_given_a_new_password_or_removed,
    a_recording_download_is_queued_once_and_comes_due_in_order,
    a_jobs_last_run_only_moves_forward,
    the_vault_keeps_each_key_until_it_is_destroyed,
    a_recipient_is_registered_with_its_events_and_journaled,
    a_recorded_redaction_survives_until_it_ends_and_keeps_its_recordings_referenced,
    clients_inserting_one_key_id_at_once_all_succeed_and_the_first_key_stays,
);
