//! What a user of the store may rely on, on every backend. Each story takes an [`Env`] and
//! is run by [`crate::store_stories!`] once per backend. Synthetic data only.

use std::collections::BTreeMap;

use ringfence_core::access::{Role, Scope};
use ringfence_core::call::RedactionReason;
use ringfence_core::collection::{CollectionSettings, IpPolicy, RecordingMode};
use ringfence_core::recipients::{DeliveryState, EventKind};
use ringfence_core::retention::{RetentionPolicy, RetentionScope};
use ringfence_core::timestamp::Timestamp;
use ringfence_core::{
    AccountId, AgencyId, CallId, DataCategory, RecipientId, SessionId, TokenId, UserId,
};
use ringfence_crypto::{KeyPurpose, MasterKey, Vault};
use ringfence_store::journal::verify_journal;
use ringfence_store::records::*;
use ringfence_store::{StoreError, UserChange, UserRecord, WebSessionRecord};

use crate::Env;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn event(action: &str, account: Option<AccountId>) -> AuditEvent {
    AuditEvent {
        actor: "cli".into(),
        action: action.into(),
        account_id: account,
        details: "{}".into(),
        ..AuditEvent::default()
    }
}

async fn agency(env: &Env, name: &str) -> AgencyRecord {
    let agency = AgencyRecord {
        id: AgencyId::generate(),
        name: name.into(),
        redaction_enabled: true,
        max_retention_days: Some(365),
        created_at: Timestamp::now(),
    };
    env.store
        .create_agency(agency.clone())
        .await
        .expect("an agency is created");
    agency
}

async fn account(env: &Env, agency: AgencyId, name: &str) -> AccountRecord {
    let account = AccountRecord {
        id: AccountId::generate(),
        agency_id: agency,
        name: name.into(),
        collection: CollectionSettings::default(),
        twilio_auth_token: None,
        twilio_delete_recordings: false,
        twilio_account_sid: None,
        retention: RetentionPolicy::default(),
        created_at: Timestamp::now(),
    };
    env.store
        .create_account(account.clone())
        .await
        .expect("an account is created");
    account
}

pub async fn agencies_and_accounts_keep_every_field_they_were_given(env: Env) {
    let first = agency(&env, "Agency One").await;
    let second = agency(&env, "Agency Two").await;
    assert_eq!(
        env.store.agency(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(env.store.agency(AgencyId::generate()).await.unwrap(), None);

    let mut changed = first.clone();
    changed.name = "Agency One renamed".into();
    changed.redaction_enabled = false;
    changed.max_retention_days = None;
    env.store.update_agency(changed.clone()).await.unwrap();
    assert_eq!(env.store.agency(first.id).await.unwrap(), Some(changed));
    let missing = AgencyRecord {
        id: AgencyId::generate(),
        ..first.clone()
    };
    assert!(matches!(
        env.store.update_agency(missing).await,
        Err(StoreError::NotFound("agency"))
    ));
    let agencies: Vec<AgencyId> = env
        .store
        .list_agencies()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(agencies.len(), 2);
    assert!(agencies.contains(&first.id) && agencies.contains(&second.id));

    // Every setting an account has survives the round trip, none left at its default.
    let full = AccountRecord {
        id: AccountId::generate(),
        agency_id: first.id,
        name: "Business".into(),
        collection: CollectionSettings {
            caller_name: true,
            caller_location: true,
            recording_gdpr: RecordingMode::Off,
            recording_other: RecordingMode::OptIn,
            transcription: true,
            visitor_ip: IpPolicy::Full,
            visitor_details: false,
        },
        twilio_auth_token: Some(vec![1, 2, 3, 4]),
        twilio_delete_recordings: true,
        twilio_account_sid: Some(format!("AC{}", "0".repeat(32))),
        retention: RetentionPolicy {
            after_days: Some(30),
            scope: RetentionScope::Gdpr,
            categories: BTreeMap::from([(DataCategory::Recording, 7), (DataCategory::Visitor, 1)]),
        },
        created_at: at(1_700_000_000_000),
    };
    env.store.create_account(full.clone()).await.unwrap();
    assert_eq!(
        env.store.account(full.id).await.unwrap(),
        Some(full.clone())
    );

    let mut back_to_defaults = full.clone();
    back_to_defaults.collection = CollectionSettings::default();
    back_to_defaults.retention = RetentionPolicy::default();
    back_to_defaults.twilio_auth_token = None;
    back_to_defaults.twilio_account_sid = None;
    env.store
        .update_account(back_to_defaults.clone())
        .await
        .unwrap();
    assert_eq!(
        env.store.account(full.id).await.unwrap(),
        Some(back_to_defaults)
    );

    let other = account(&env, second.id, "Other business").await;
    let of_first: Vec<AccountId> = env
        .store
        .list_accounts(Some(first.id))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(of_first, vec![full.id]);
    assert_eq!(env.store.list_accounts(None).await.unwrap().len(), 2);
    assert_eq!(env.store.account(other.id).await.unwrap(), Some(other));

    // An account belongs to an agency that exists, and nothing is stored otherwise.
    let orphan = AccountRecord {
        id: AccountId::generate(),
        agency_id: AgencyId::generate(),
        ..full.clone()
    };
    assert!(matches!(
        env.store.create_account(orphan.clone()).await,
        Err(StoreError::NotFound("agency"))
    ));
    assert_eq!(env.store.account(orphan.id).await.unwrap(), None);
    assert!(matches!(
        env.store.update_account(orphan).await,
        Err(StoreError::NotFound("account"))
    ));
}

fn token(scope: Scope, role: Role, seed: u8) -> TokenRecord {
    TokenRecord {
        id: TokenId::generate(),
        hash: [seed; 32],
        role,
        scope,
        personal_data: seed.is_multiple_of(2),
        label: Some(format!("token {seed}")),
        created_at: at(1_700_000_000_000 + i64::from(seed)),
        expires_at: Some(at(1_800_000_000_000)),
        revoked_at: None,
        last_used_at: None,
    }
}

pub async fn a_token_is_found_by_its_hash_and_revoked_once_with_one_journal_entry(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let tokens = [
        token(Scope::Installation, Role::Admin, 1),
        token(Scope::Agency(agency.id), Role::AgencyAdmin, 2),
        token(
            Scope::Account {
                agency: agency.id,
                account: account.id,
            },
            Role::Ingest,
            3,
        ),
    ];
    for t in &tokens {
        env.store.create_token(t.clone()).await.unwrap();
    }
    assert_eq!(env.store.token_count().await.unwrap(), 3);
    for t in &tokens {
        assert_eq!(
            env.store.token_by_hash(t.hash).await.unwrap().as_ref(),
            Some(t)
        );
        assert_eq!(env.store.token(t.id).await.unwrap().as_ref(), Some(t));
    }
    assert_eq!(env.store.token_by_hash([9; 32]).await.unwrap(), None);
    assert_eq!(env.store.list_tokens().await.unwrap(), tokens.to_vec());

    // The last use only moves forward.
    let ingest = &tokens[2];
    env.store.touch_token(ingest.id, at(2_000)).await.unwrap();
    env.store.touch_token(ingest.id, at(1_000)).await.unwrap();
    let touched = env.store.token(ingest.id).await.unwrap().unwrap();
    assert_eq!(touched.last_used_at, Some(at(2_000)));

    let before = env.store.last_audit().await.unwrap().map_or(0, |e| e.seq);
    let revoke = event("token.revoked", Some(account.id));
    assert!(
        env.store
            .revoke_token(ingest.id, at(3_000), revoke.clone())
            .await
            .unwrap()
    );
    assert!(
        !env.store
            .revoke_token(ingest.id, at(4_000), revoke.clone())
            .await
            .unwrap(),
        "a revoked token is not revoked again"
    );
    let revoked = env.store.token(ingest.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(3_000)));
    let journaled = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: Some(before),
            before_seq: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(journaled.len(), 1, "one entry for one revocation");
    assert_eq!(journaled[0].event, revoke);

    // Eight clients revoking one token at once: one revocation, one journal entry.
    let agency_token = tokens[1].id;
    let before = journaled[0].seq;
    let racers = (0..8).map(|i| {
        let store = env.store.clone();
        let revoke = revoke.clone();
        tokio::spawn(async move {
            store
                .revoke_token(agency_token, at(10_000 + i), revoke)
                .await
                .expect("a revocation")
        })
    });
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("a racer"))
        .count();
    assert_eq!(won, 1, "exactly one client revoked it");
    let journaled = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: Some(before),
            before_seq: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(journaled.len(), 1);
}

pub async fn concurrent_writers_extend_one_journal_chain(env: Env) {
    let agency = agency(&env, "Agency").await;
    let accounts = [
        account(&env, agency.id, "One").await,
        account(&env, agency.id, "Two").await,
    ];
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let writers = (0..WRITERS).map(|w| {
        let store = env.store.clone();
        let account = accounts[w % 2].id;
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let mut e = event("test.appended", Some(account));
                e.subject = Some(format!("writer-{w}-{i}"));
                e.count = Some(i as u64);
                seqs.push(store.append_audit(e).await.expect("an append"));
            }
            seqs
        })
    });
    let mut seqs: Vec<i64> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("a writer"))
        .collect();
    seqs.sort_unstable();
    let before = seqs[0] - 1;
    let expected: Vec<i64> = (before + 1..=before + (WRITERS * EACH) as i64).collect();
    assert_eq!(
        seqs, expected,
        "every append got its own place in one chain"
    );

    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, before as u64 + (WRITERS * EACH) as u64);
    let last = env.store.last_audit().await.unwrap().expect("a last entry");
    assert_eq!(last.seq, verified.last_seq);
    assert_eq!(last.hash, verified.head);
    // The vault's anchor of the head makes a truncated or rewritten journal fail.
    env.vault.anchor_journal(last.seq, last.hash).await.unwrap();
    let anchor = env.vault.journal_anchor().await.unwrap();
    assert_eq!(anchor, Some((last.seq, last.hash)));
    assert!(
        verify_journal(env.store.as_ref(), anchor)
            .await
            .unwrap()
            .is_ok()
    );

    // Entries of one account are found by it, in order.
    let of_one = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: Some(accounts[0].id),
            after_seq: None,
            before_seq: None,
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(of_one.len(), WRITERS / 2 * EACH);
    assert!(of_one.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        of_one
            .iter()
            .all(|e| e.event.account_id == Some(accounts[0].id))
    );
    // Times never go backwards along the chain.
    let all = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: None,
            after_seq: None,
            before_seq: None,
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
}

fn user(scope: Scope, index: u8) -> UserRecord {
    UserRecord {
        id: UserId::generate(),
        email_index: [index; 16],
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c3ludGhldGlj$c3ludGhldGlj".into(),
        role: Role::AccountAdmin,
        scope,
        personal_data: false,
        failed_logins: 0,
        locked_until: None,
        created_at: at(1_700_000_000_000),
        disabled_at: None,
        last_sign_in_at: None,
        email_sealed: None,
    }
}

fn web_session(user: UserId, seed: u8, now: i64) -> WebSessionRecord {
    WebSessionRecord {
        hash: [seed; 32],
        user_id: user,
        csrf_token: format!("csrf-{seed}"),
        created_at: at(now),
        last_seen_at: at(now),
    }
}

pub async fn a_users_sessions_end_when_it_is_disabled_given_a_new_password_or_removed(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let scope = Scope::Account {
        agency: agency.id,
        account: account.id,
    };
    let ada = user(scope, 1);
    env.store
        .create_user(ada.clone(), event("user.created", Some(account.id)))
        .await
        .unwrap();
    // One e-mail address, one user.
    let twin = user(scope, 1);
    assert!(matches!(
        env.store
            .create_user(twin.clone(), event("user.created", Some(account.id)))
            .await,
        Err(StoreError::AlreadyExists("user"))
    ));
    assert_eq!(env.store.user(twin.id).await.unwrap(), None);
    assert_eq!(
        env.store.user_by_email_index([1; 16]).await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(env.store.list_users().await.unwrap(), vec![ada.clone()]);

    // Signing in records the time and replaces the session the browser came with.
    env.store
        .start_web_session(web_session(ada.id, 10, 1_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 11, 2_000), Some([10; 32]))
        .await
        .unwrap();
    assert_eq!(env.store.web_session([10; 32]).await.unwrap(), None);
    let (session, signed_in) = env.store.web_session([11; 32]).await.unwrap().unwrap();
    assert_eq!(session, web_session(ada.id, 11, 2_000));
    assert_eq!(signed_in.last_sign_in_at, Some(at(2_000)));

    // Activity only moves a session's last sight forward.
    env.store
        .touch_web_session([11; 32], at(5_000))
        .await
        .unwrap();
    env.store
        .touch_web_session([11; 32], at(4_000))
        .await
        .unwrap();
    let (session, _) = env.store.web_session([11; 32]).await.unwrap().unwrap();
    assert_eq!(session.last_seen_at, at(5_000));

    // A role change keeps the session; disabling ends it in the same transaction.
    let analyst = env
        .store
        .update_user(
            ada.id,
            UserChange {
                role: Some(Role::Analyst),
                ..UserChange::default()
            },
            vec![event("user.role_changed", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(analyst.role, Role::Analyst);
    assert!(env.store.web_session([11; 32]).await.unwrap().is_some());
    let disabled = env
        .store
        .update_user(
            ada.id,
            UserChange {
                disabled: Some(Some(at(6_000))),
                ..UserChange::default()
            },
            vec![event("user.disabled", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(disabled.disabled_at, Some(at(6_000)));
    assert_eq!(env.store.web_session([11; 32]).await.unwrap(), None);

    // Enabled again and signed in: a new password ends the session too.
    env.store
        .update_user(
            ada.id,
            UserChange {
                disabled: Some(None),
                ..UserChange::default()
            },
            vec![event("user.enabled", Some(account.id))],
        )
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 12, 7_000), None)
        .await
        .unwrap();
    env.store
        .update_user(
            ada.id,
            UserChange {
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$b3RoZXI".into()),
                ..UserChange::default()
            },
            vec![event("user.password_reset", Some(account.id))],
        )
        .await
        .unwrap();
    assert_eq!(env.store.web_session([12; 32]).await.unwrap(), None);

    // Housekeeping ends sessions idle or too old, whoever's they are.
    let bob = user(scope, 2);
    env.store
        .create_user(bob.clone(), event("user.created", Some(account.id)))
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(bob.id, 20, 10_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(bob.id, 21, 30_000), None)
        .await
        .unwrap();
    env.store
        .start_web_session(web_session(ada.id, 13, 30_000), None)
        .await
        .unwrap();
    env.store
        .end_web_session([13; 32], at(20_000), at(0))
        .await
        .unwrap();
    assert_eq!(env.store.web_session([13; 32]).await.unwrap(), None);
    assert_eq!(env.store.web_session([20; 32]).await.unwrap(), None);
    assert!(env.store.web_session([21; 32]).await.unwrap().is_some());

    // Removing a user ends every session of theirs.
    env.store
        .remove_user(bob.id, event("user.removed", Some(account.id)))
        .await
        .unwrap();
    assert_eq!(env.store.user(bob.id).await.unwrap(), None);
    assert_eq!(env.store.web_session([21; 32]).await.unwrap(), None);
    assert!(matches!(
        env.store
            .remove_user(bob.id, event("user.removed", Some(account.id)))
            .await,
        Err(StoreError::NotFound("user"))
    ));
    // Every change above was journaled, and the chain holds.
    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, 7);
}

fn download(account: AccountId, sid: &str, due: i64) -> DownloadJob {
    DownloadJob {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account,
        call_sid: format!("CA{}", "1".repeat(32)),
        recording_sid: sid.into(),
        url: format!("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/{sid}"),
        provider_account: format!("AC{}", "0".repeat(32)),
        state: "pending".into(),
        attempts: 0,
        next_attempt_at: at(due),
        outcome: None,
        created_at: at(due),
    }
}

pub async fn a_recording_download_is_queued_once_and_comes_due_in_order(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let later = download(account.id, "RE2", 2_000);
    let sooner = download(account.id, "RE1", 1_000);
    assert!(env.store.enqueue_download(later.clone()).await.unwrap());
    assert!(env.store.enqueue_download(sooner.clone()).await.unwrap());
    // The same recording again (a repeated callback) is not queued twice.
    assert!(
        !env.store
            .enqueue_download(download(account.id, "RE1", 500))
            .await
            .unwrap()
    );
    let due = env.store.due_downloads(at(1_500), 10).await.unwrap();
    assert_eq!(due, vec![sooner.clone()]);
    let due = env.store.due_downloads(at(5_000), 10).await.unwrap();
    assert_eq!(due, vec![sooner.clone(), later.clone()]);
    assert_eq!(
        env.store.due_downloads(at(5_000), 1).await.unwrap().len(),
        1
    );

    // A retry moves it back; a finished one is no longer due, and the journal says so.
    let mut retried = sooner.clone();
    retried.attempts = 1;
    retried.next_attempt_at = at(9_000);
    retried.outcome = Some("http_503".into());
    env.store
        .update_download(retried.clone(), None)
        .await
        .unwrap();
    let mut done = later.clone();
    done.state = "done".into();
    done.attempts = 1;
    done.outcome = Some("stored".into());
    let journal = event("recording.downloaded", Some(account.id));
    env.store
        .update_download(done.clone(), Some(journal.clone()))
        .await
        .unwrap();
    assert!(
        env.store
            .due_downloads(at(5_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        env.store.due_downloads(at(9_000), 10).await.unwrap(),
        vec![retried.clone()]
    );
    assert_eq!(
        env.store.downloads(account.id).await.unwrap(),
        vec![retried, done],
        "in the order they were created"
    );
    let last = env.store.last_audit().await.unwrap().expect("journaled");
    assert_eq!(last.event, journal);
}

pub async fn a_jobs_last_run_only_moves_forward(env: Env) {
    assert!(env.store.job_runs().await.unwrap().is_empty());
    env.store
        .record_job_run("sweep".into(), at(2_000))
        .await
        .unwrap();
    env.store
        .record_job_run("outbox".into(), at(1_000))
        .await
        .unwrap();
    env.store
        .record_job_run("sweep".into(), at(1_500))
        .await
        .unwrap();
    assert_eq!(
        env.store.job_runs().await.unwrap(),
        vec![("outbox".into(), at(1_000)), ("sweep".into(), at(2_000))]
    );
    env.store
        .record_job_run("sweep".into(), at(3_000))
        .await
        .unwrap();
    assert_eq!(
        env.store.job_runs().await.unwrap()[1],
        ("sweep".into(), at(3_000))
    );
    env.store.ping().await.expect("the store answers");
}

pub async fn the_vault_keeps_each_key_until_it_is_destroyed(env: Env) {
    let (master, _file) = MasterKey::generate();
    let vault = Vault::new(master, env.vault.clone());
    let account = AccountId::generate().to_string();
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for i in 0..5 {
        let (key, record) = vault.issue(format!("call:{i:02}"), account.clone(), KeyPurpose::Call);
        keys.push(key);
        records.push(record);
    }
    let (session_key, session_record) =
        vault.issue("session:00".into(), account.clone(), KeyPurpose::Session);
    records.push(session_record);
    vault.insert(records.clone()).await.unwrap();
    // A second insert of an id keeps the first key.
    let (_, replacement) = vault.issue("call:00".into(), account.clone(), KeyPurpose::Call);
    vault.insert(vec![replacement]).await.unwrap();
    assert!(vault.open_key("call:00").await.unwrap() == Some(keys[0].clone()));
    assert!(vault.open_key("session:00").await.unwrap() == Some(session_key));
    let opened = vault
        .open_keys(vec!["call:03".into(), "missing".into(), "call:01".into()])
        .await
        .unwrap();
    assert_eq!(opened.len(), 2);
    assert!(opened["call:01"] == keys[1] && opened["call:03"] == keys[3]);

    // Listed by purpose and age, page by page in id order.
    let future = Timestamp::now().millis() + 60_000;
    let first = vault.list(KeyPurpose::Call, future, None, 3).await.unwrap();
    assert_eq!(first, vec!["call:00", "call:01", "call:02"]);
    let rest = vault
        .list(KeyPurpose::Call, future, Some("call:02".into()), 3)
        .await
        .unwrap();
    assert_eq!(rest, vec!["call:03", "call:04"]);
    assert!(
        vault
            .list(KeyPurpose::Call, 0, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Destroyed keys are gone for good; destroying again counts nothing.
    assert_eq!(
        vault
            .destroy(vec!["call:01".into(), "call:02".into(), "missing".into()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(vault.destroy(vec!["call:01".into()]).await.unwrap(), 0);
    vault.compact().await.unwrap();
    assert_eq!(vault.open_key("call:01").await.unwrap(), None);
    assert_eq!(
        vault
            .list(KeyPurpose::Call, future, None, 10)
            .await
            .unwrap(),
        vec!["call:00", "call:03", "call:04"]
    );

    // The journal's anchor only moves forward.
    assert_eq!(vault.journal_anchor().await.unwrap(), None);
    vault.anchor_journal(5, [5; 32]).await.unwrap();
    vault.anchor_journal(4, [4; 32]).await.unwrap();
    assert_eq!(vault.journal_anchor().await.unwrap(), Some((5, [5; 32])));
    // A key of every purpose is kept (a backend whose schema refused one would lose, say,
    // every user's e-mail address key).
    for purpose in KeyPurpose::ALL {
        let id = format!("purpose:{}", purpose.as_str());
        let (key, record) = vault.issue(id.clone(), account.clone(), purpose);
        vault.insert(vec![record]).await.unwrap();
        assert!(
            vault.open_key(&id).await.unwrap() == Some(key),
            "{purpose:?}"
        );
    }
    vault.ping().await.unwrap();
}

fn recipient(account: AccountId, name: &str, events: Vec<EventKind>, created: i64) -> RecipientRow {
    RecipientRow {
        id: RecipientId::generate(),
        account_id: account,
        name: name.into(),
        url: "https://crm.example.com/hooks/ringfence".into(),
        secret: vec![0x5e; 48],
        events,
        personal_data: false,
        created_at: at(created),
        updated_at: at(created),
        disabled_at: None,
    }
}

pub async fn a_recipient_is_registered_with_its_events_and_journaled(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let other = account_of(&env, agency.id).await;
    let crm = recipient(account.id, "CRM", EventKind::ALL.to_vec(), 1_000);
    let ads = recipient(account.id, "Ads", vec![EventKind::CallCreated], 2_000);
    for r in [&crm, &ads] {
        env.store
            .create_recipient(r.clone(), event("recipient.created", Some(account.id)))
            .await
            .unwrap();
    }
    assert_eq!(
        env.store.recipients(account.id).await.unwrap(),
        vec![crm.clone(), ads.clone()]
    );
    assert_eq!(
        env.store.recipient(account.id, ads.id).await.unwrap(),
        Some(ads.clone())
    );
    // Another tenant's recipient is not found through this account, nor listed.
    assert_eq!(env.store.recipient(other, ads.id).await.unwrap(), None);
    assert!(env.store.recipients(other).await.unwrap().is_empty());
    // Nothing was sent yet.
    let page = env
        .store
        .deliveries(DeliveryQuery {
            account_id: account.id,
            recipient_id: crm.id,
            state: None,
            event: None,
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert!(page.is_empty());
    assert!(
        env.store
            .due_deliveries(Timestamp::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        env.store
            .delivered_to(vec![ringfence_core::CallId::generate()])
            .await
            .unwrap()
            .is_empty()
    );
    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, 2, "one entry per registration");
}

async fn account_of(env: &Env, agency: AgencyId) -> AccountId {
    account(env, agency, "Other business").await.id
}

fn job(id: &str, created: i64, reason: RedactionReason, account: AccountId) -> RedactionJob {
    RedactionJob {
        id: id.into(),
        created_at: at(created),
        reason,
        call_ids: vec![CallId::generate(), CallId::generate()],
        session_ids: vec![SessionId::generate()],
        objects: vec![format!("recordings/{account}/{id}.wav")],
        forget: vec![(account, [3; 16])],
        subjects: vec![(account, [4; 16]), (account, [5; 16])],
        audit: AuditEvent {
            actor: "cli".into(),
            action: "caller.redacted".into(),
            account_id: Some(account),
            subject: Some(id.into()),
            reason: Some("request".into()),
            details: "{}".into(),
            ..AuditEvent::default()
        },
        categories: vec![],
    }
}

pub async fn a_recorded_redaction_survives_until_it_ends_and_keeps_its_recordings_referenced(
    env: Env,
) {
    let account = AccountId::generate();
    let caller = job("job-a", 1_000, RedactionReason::Caller, account);
    let mut partial = job("job-b", 2_000, RedactionReason::Retention, account);
    partial.forget.clear();
    partial.categories = vec![DataCategory::Recording, DataCategory::Transcript];
    // Recorded out of order: they come back oldest first, as they were given.
    env.store.begin_redaction(partial.clone()).await.unwrap();
    env.store.begin_redaction(caller.clone()).await.unwrap();
    assert_eq!(
        env.store.pending_redactions().await.unwrap(),
        vec![caller.clone(), partial.clone()]
    );
    // A recording a job still has to delete is referenced (the orphan sweep leaves it).
    let unknown = format!("recordings/{account}/unknown.wav");
    let asked = vec![caller.objects[0].clone(), unknown.clone()];
    assert_eq!(
        env.store
            .referenced_recordings(asked.clone())
            .await
            .unwrap(),
        vec![caller.objects[0].clone()]
    );
    env.store.end_redaction(caller.id.clone()).await.unwrap();
    assert_eq!(env.store.pending_redactions().await.unwrap(), vec![partial]);
    assert!(
        env.store
            .referenced_recordings(asked)
            .await
            .unwrap()
            .is_empty()
    );
    // Ending it again changes nothing.
    env.store.end_redaction(caller.id).await.unwrap();
}

pub async fn clients_inserting_one_key_id_at_once_all_succeed_and_the_first_key_stays(env: Env) {
    let (master, _file) = MasterKey::generate();
    let vault = Vault::new(master, env.vault.clone());
    let account = AccountId::generate().to_string();
    let racers = (0..8).map(|_| {
        let vault = vault.clone();
        let account = account.clone();
        tokio::spawn(async move {
            let (key, record) = vault.issue("call:raced".into(), account, KeyPurpose::Call);
            vault.insert(vec![record]).await.expect("an insert");
            key
        })
    });
    let issued: Vec<_> = futures::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.expect("a racer"))
        .collect();
    let kept = vault
        .open_key("call:raced")
        .await
        .unwrap()
        .expect("one key is stored");
    assert!(
        issued.contains(&kept),
        "the stored key is one of those issued"
    );
    // It stays the same key on every read.
    for _ in 0..3 {
        assert!(vault.open_key("call:raced").await.unwrap() == Some(kept.clone()));
    }
    assert_eq!(vault.destroy(vec!["call:raced".into()]).await.unwrap(), 1);
}

/// A caller's blind index (stands for a synthetic number such as +44 20 7946 0123).
const CALLER: [u8; 16] = [0x44; 16];
/// A visitor's blind index.
const VISITOR: [u8; 16] = [0x56; 16];

fn new_call(account: AccountId, external: &str, started: i64) -> NewCallRow {
    NewCallRow {
        call: CallRow {
            id: CallId::generate(),
            account_id: account,
            external_id: Some(external.into()),
            started_at: at(started),
            created_at: at(started + 5),
            duration_s: Some(42),
            direction: Some(ringfence_core::call::Direction::Inbound),
            status: Some(ringfence_core::call::CallStatus::Completed),
            tracking_number: "+442079460100".into(),
            source: Some("google".into()),
            campaign: None,
            utm_source: None,
            utm_medium: None,
            utm_campaign: None,
            gdpr_scope: Some(true),
            caller_bidx: Some(CALLER),
            session_id: None,
            caller_identity: Some(vec![0xc1; 40]),
            caller_location: Some(vec![0xc2; 40]),
            transcript: None,
            interaction: None,
            recording: None,
            redacted_at: None,
            redaction_reason: None,
            redacted_by: None,
            legal_hold: None,
        },
        inline_session: None,
        consents: vec![],
        transcript_needs_consent: false,
    }
}

fn visit(account: AccountId, external: &str) -> SessionRow {
    SessionRow {
        id: SessionId::generate(),
        account_id: account,
        external_id: Some(external.into()),
        started_at: at(500),
        created_at: at(505),
        utm_source: Some("newsletter".into()),
        utm_medium: None,
        utm_campaign: None,
        visitor: Some(vec![0x71; 40]),
        gdpr_scope: Some(true),
        visitor_bidx: Some(VISITOR),
        redacted_at: None,
        redaction_reason: None,
    }
}

fn consent(
    account: AccountId,
    kind: ringfence_core::consent::SubjectKind,
    subject: [u8; 16],
    category: DataCategory,
    status: ringfence_core::consent::ConsentStatus,
) -> ConsentRow {
    ConsentRow {
        seq: 0,
        id: format!("cns_{}", CallId::generate()),
        account_id: account,
        subject_kind: kind,
        subject_bidx: subject,
        subject: vec![0x5b; 40],
        category,
        status,
        notice_version: None,
        method: ringfence_core::consent::ConsentMethod::IvrKeypress,
        at: at(900),
        call_id: None,
        recorded_by: "cli".into(),
    }
}

async fn created_deliveries(env: &Env, account: AccountId, to: RecipientId) -> Vec<DeliveryRow> {
    env.store
        .deliveries(DeliveryQuery {
            account_id: account,
            recipient_id: to,
            state: None,
            event: Some(EventKind::CallCreated),
            before: None,
            limit: 50,
        })
        .await
        .unwrap()
}

pub async fn an_ingested_batch_is_stored_once_whole_or_not_at_all_and_told_to_recipients(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let crm = recipient(account, "CRM", vec![EventKind::CallCreated], 1_000);
    let erasures = recipient(account, "Erasures", vec![EventKind::CallRedacted], 1_000);
    for r in [&crm, &erasures] {
        env.store
            .create_recipient(r.clone(), event("recipient.created", Some(account)))
            .await
            .unwrap();
    }
    let first = new_call(account, "CA01", 1_000);
    let second = new_call(account, "CA02", 2_000);
    let report = env
        .store
        .insert_calls(vec![first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            Inserted::Created(first.call.id),
            Inserted::Created(second.call.id)
        ]
    );
    assert!(report.forgotten.is_empty());
    assert_eq!(report.withheld, vec![vec![], vec![]]);
    assert_eq!(
        env.store.call(first.call.id).await.unwrap(),
        Some(first.call.clone()),
        "every field is kept as given"
    );
    // One call.created per new call for the recipient that takes it, none for the other.
    let told: Vec<Option<CallId>> = created_deliveries(&env, account, crm.id)
        .await
        .iter()
        .map(|d| d.call_id)
        .collect();
    assert_eq!(told.len(), 2);
    assert!(told.contains(&Some(first.call.id)) && told.contains(&Some(second.call.id)));
    assert!(
        created_deliveries(&env, account, erasures.id)
            .await
            .is_empty()
    );

    // A re-delivery (new ids, same external ids) finds the stored calls and queues nothing.
    let again = vec![
        new_call(account, "CA01", 1_000),
        new_call(account, "CA02", 2_000),
    ];
    let report = env.store.insert_calls(again).await.unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            Inserted::Existing(first.call.id),
            Inserted::Existing(second.call.id)
        ]
    );
    assert_eq!(created_deliveries(&env, account, crm.id).await.len(), 2);

    // Two calls of one batch with one external id: the sender's bug, refused.
    let twice = vec![
        new_call(account, "CA03", 3_000),
        new_call(account, "CA03", 3_000),
    ];
    assert!(matches!(
        env.store.insert_calls(twice).await,
        Err(StoreError::DuplicateInBatch { index: 1 })
    ));
    // A call linked to an unknown session refuses the batch, and nothing of it is stored.
    let mut orphan = new_call(account, "CA05", 5_000);
    orphan.call.session_id = Some(SessionId::generate());
    let batch = vec![new_call(account, "CA04", 4_000), orphan];
    assert!(matches!(
        env.store.insert_calls(batch).await,
        Err(StoreError::SessionNotFound { index: 1 })
    ));
    for external in ["CA03", "CA04", "CA05"] {
        assert_eq!(
            env.store
                .call_by_external(account, external.into())
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(created_deliveries(&env, account, crm.id).await.len(), 2);

    // A call sent with its visit stores the visit and refers to it; re-sent, it stores
    // neither again.
    let mut with_visit = new_call(account, "CA06", 6_000);
    let session = visit(account, "WS01");
    with_visit.inline_session = Some(session.clone());
    let report = env
        .store
        .insert_calls(vec![with_visit.clone()])
        .await
        .unwrap();
    assert_eq!(report.outcomes, vec![Inserted::Created(with_visit.call.id)]);
    let stored = env.store.call(with_visit.call.id).await.unwrap().unwrap();
    assert_eq!(stored.session_id, Some(session.id));
    assert_eq!(
        env.store.sessions(vec![session.id]).await.unwrap(),
        vec![session.clone()]
    );
    let mut resent = new_call(account, "CA06", 6_000);
    resent.inline_session = Some(visit(account, "WS01"));
    let report = env.store.insert_calls(vec![resent]).await.unwrap();
    assert_eq!(
        report.outcomes,
        vec![Inserted::Existing(with_visit.call.id)]
    );
    // A later call linked to the stored visit.
    let mut linked = new_call(account, "CA07", 7_000);
    linked.call.session_id = Some(session.id);
    env.store.insert_calls(vec![linked.clone()]).await.unwrap();
    assert_eq!(
        env.store
            .call(linked.call.id)
            .await
            .unwrap()
            .unwrap()
            .session_id,
        Some(session.id)
    );
    verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
}

/// A consent recorded against a call must name a call of its own account: another tenant's
/// call is not found, and nothing is recorded.
pub async fn a_consent_naming_another_accounts_call_is_not_found_and_records_nothing(env: Env) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let mine = account(&env, agency.id, "Mine").await.id;
    let theirs = account(&env, agency.id, "Theirs").await.id;
    let their_call = new_call(theirs, "CA21", 1_000);
    env.store
        .insert_calls(vec![their_call.clone()])
        .await
        .unwrap();
    for status in [ConsentStatus::Granted, ConsentStatus::Withdrawn] {
        let mut row = consent(
            mine,
            SubjectKind::Caller,
            CALLER,
            DataCategory::Recording,
            status,
        );
        row.call_id = Some(their_call.call.id);
        assert!(
            matches!(
                env.store.record_consent(row, None).await,
                Err(StoreError::NotFound("call"))
            ),
            "{status:?}"
        );
    }
    assert!(
        env.store
            .consents(mine, Some(CALLER), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Against its own account's call it is recorded.
    let mut row = consent(
        theirs,
        SubjectKind::Caller,
        CALLER,
        DataCategory::Recording,
        ConsentStatus::Granted,
    );
    row.call_id = Some(their_call.call.id);
    env.store.record_consent(row, None).await.unwrap();
}

pub async fn an_arriving_call_keeps_out_what_its_subjects_withdrew_and_records_the_consents_sent_with_it(
    env: Env,
) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    // The caller withdraws consent to their identity on the call itself (an IVR keypress).
    let mut first = new_call(account, "CA11", 1_000);
    first.consents = vec![consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::CallerIdentity,
        ConsentStatus::Withdrawn,
    )];
    let report = env.store.insert_calls(vec![first.clone()]).await.unwrap();
    assert_eq!(report.withheld, vec![vec![DataCategory::CallerIdentity]]);
    let stored = env.store.call(first.call.id).await.unwrap().unwrap();
    assert_eq!(stored.caller_identity, None);
    assert_eq!(stored.caller_location, first.call.caller_location);
    let ledger = env
        .store
        .consents(account, Some(CALLER), None, 10)
        .await
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].id, first.consents[0].id);
    assert_eq!(
        ledger[0].call_id,
        Some(first.call.id),
        "recorded against the call"
    );

    // The caller's next call keeps it out too: the ledger decides.
    let second = new_call(account, "CA12", 2_000);
    let report = env.store.insert_calls(vec![second.clone()]).await.unwrap();
    assert_eq!(report.withheld, vec![vec![DataCategory::CallerIdentity]]);
    assert_eq!(
        env.store
            .call(second.call.id)
            .await
            .unwrap()
            .unwrap()
            .caller_identity,
        None
    );

    // An opt-in transcript without a granted consent refuses the batch.
    let mut opt_in = new_call(account, "CA13", 3_000);
    opt_in.call.transcript = Some(vec![0x7a; 40]);
    opt_in.transcript_needs_consent = true;
    assert!(matches!(
        env.store.insert_calls(vec![opt_in.clone()]).await,
        Err(StoreError::ConsentRequired {
            index: 0,
            category: DataCategory::Transcript
        })
    ));
    // Granted with the call, it is kept.
    opt_in.consents = vec![consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::Transcript,
        ConsentStatus::Granted,
    )];
    env.store.insert_calls(vec![opt_in.clone()]).await.unwrap();
    assert_eq!(
        env.store
            .call(opt_in.call.id)
            .await
            .unwrap()
            .unwrap()
            .transcript,
        opt_in.call.transcript
    );

    // A consent naming a notice version the account never published refuses the batch,
    // and neither the call nor the event is stored.
    let mut unknown_notice = new_call(account, "CA14", 4_000);
    let mut grant = consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::CallerLocation,
        ConsentStatus::Granted,
    );
    grant.notice_version = Some(9);
    unknown_notice.consents = vec![grant];
    assert!(matches!(
        env.store.insert_calls(vec![unknown_notice]).await,
        Err(StoreError::UnknownNoticeVersion { index: Some(0) })
    ));
    assert_eq!(
        env.store
            .call_by_external(account, "CA14".into())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        env.store
            .consents(account, Some(CALLER), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // A visitor who withdrew: a visit sent on its own, or with a call, keeps no visitor.
    let mut withdrawal = new_call(account, "CA15", 5_000);
    withdrawal.consents = vec![consent(
        account,
        SubjectKind::Visitor,
        VISITOR,
        DataCategory::Visitor,
        ConsentStatus::Withdrawn,
    )];
    env.store.insert_calls(vec![withdrawal]).await.unwrap();
    let alone = visit(account, "WS11");
    let (stored, withheld) = env.store.insert_session(alone.clone()).await.unwrap();
    assert_eq!(stored, Inserted::Created(alone.id));
    assert!(withheld);
    let kept = &env.store.sessions(vec![alone.id]).await.unwrap()[0];
    assert_eq!((kept.visitor.as_ref(), kept.visitor_bidx), (None, None));
    let mut with_visit = new_call(account, "CA16", 6_000);
    with_visit.inline_session = Some(visit(account, "WS12"));
    let report = env.store.insert_calls(vec![with_visit]).await.unwrap();
    assert_eq!(
        report.withheld,
        vec![vec![DataCategory::CallerIdentity, DataCategory::Visitor]]
    );
    // Each recorded event is journaled, and the chain holds.
    let verified = verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
    assert_eq!(verified.entries, 3, "one entry per consent event recorded");
}

pub async fn eight_clients_delivering_one_batch_at_once_store_each_call_once(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let crm = recipient(account, "CRM", vec![EventKind::CallCreated], 1_000);
    env.store
        .create_recipient(crm.clone(), event("recipient.created", Some(account)))
        .await
        .unwrap();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let store = env.store.clone();
            let batch: Vec<NewCallRow> = (0..5)
                .map(|i| new_call(account, &format!("CA2{i}"), 1_000 + i))
                .collect();
            tokio::spawn(async move { store.insert_calls(batch).await })
        })
        .collect();
    let mut created = Vec::new();
    let mut ids_per_client = Vec::new();
    for client in clients {
        let report = client.await.unwrap().unwrap();
        let ids: Vec<CallId> = report
            .outcomes
            .iter()
            .map(|o| match o {
                Inserted::Created(id) => {
                    created.push(*id);
                    *id
                }
                Inserted::Existing(id) => *id,
            })
            .collect();
        ids_per_client.push(ids);
    }
    assert_eq!(
        created.len(),
        5,
        "each call is created by exactly one client"
    );
    assert!(
        ids_per_client.windows(2).all(|w| w[0] == w[1]),
        "every client is answered with the stored calls"
    );
    assert_eq!(created_deliveries(&env, account, crm.id).await.len(), 5);
}

/// Puts a call on legal hold.
async fn hold(env: &Env, account: AccountId, call: CallId) {
    env.store
        .set_legal_hold(
            call,
            Some(LegalHold {
                at: at(3_000),
                reason: "litigation".into(),
                by: "cli".into(),
            }),
            event("call.legal_hold", Some(account)),
        )
        .await
        .unwrap();
}

/// A caller's redaction as the call log asks for it: nothing chosen yet, the caller forgotten.
fn caller_job(account: AccountId, id: &str) -> RedactionJob {
    RedactionJob {
        id: id.into(),
        created_at: Timestamp::now(),
        reason: RedactionReason::Caller,
        call_ids: vec![],
        session_ids: vec![],
        objects: vec![],
        forget: vec![(account, CALLER)],
        subjects: vec![(account, CALLER)],
        audit: AuditEvent {
            actor: "cli".into(),
            action: "caller.redacted".into(),
            account_id: Some(account),
            reason: Some("request".into()),
            details: "{}".into(),
            ..AuditEvent::default()
        },
        categories: vec![],
    }
}

/// Applies a job whose keys the vault reports `destroyed` (or not).
async fn apply_with_keys(
    env: &Env,
    job: &RedactionJob,
    destroyed: bool,
) -> Result<RedactionApplied, StoreError> {
    let (signal, keys_gone) = KeysDestroyed::channel();
    signal.send(destroyed);
    env.store
        .apply_redaction(job.clone(), "cli".into(), keys_gone)
        .await
}

pub async fn a_forgotten_callers_calls_are_cleared_once_their_keys_are_gone_and_later_calls_arrive_redacted(
    env: Env,
) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let crm = recipient(
        account,
        "CRM",
        vec![EventKind::CallCreated, EventKind::CallerErased],
        1_000,
    );
    env.store
        .create_recipient(crm.clone(), event("recipient.created", Some(account)))
        .await
        .unwrap();
    let mut visited = new_call(account, "CA31", 1_000);
    let session = visit(account, "WS31");
    visited.inline_session = Some(session.clone());
    visited.call.recording = Some(RecordingRow {
        object: format!("recordings/{account}/CA31.wav"),
        content_type: "audio/wav".into(),
        bytes: 4_096,
    });
    visited.consents = vec![consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::Transcript,
        ConsentStatus::Granted,
    )];
    let held = new_call(account, "CA32", 2_000);
    env.store
        .insert_calls(vec![visited.clone(), held.clone()])
        .await
        .unwrap();
    hold(&env, account, held.call.id).await;

    let (job, skipped) = env
        .store
        .begin_caller_redaction(caller_job(account, "job-forget"), vec![(account, CALLER)])
        .await
        .unwrap();
    assert_eq!(
        job.call_ids,
        vec![visited.call.id],
        "the held call is exempt"
    );
    assert_eq!(skipped, 1);
    assert_eq!(job.session_ids, vec![session.id]);
    assert_eq!(job.objects, vec![format!("recordings/{account}/CA31.wav")]);
    assert_eq!(
        env.store.pending_redactions().await.unwrap(),
        vec![job.clone()]
    );

    // The vault failed: nothing changes.
    assert!(apply_with_keys(&env, &job, false).await.is_err());
    let kept = env.store.call(visited.call.id).await.unwrap().unwrap();
    assert_eq!(kept.redacted_at, None);
    assert_eq!(kept.caller_identity, visited.call.caller_identity);

    let applied = apply_with_keys(&env, &job, true).await.unwrap();
    assert_eq!(
        (applied.calls, applied.sessions, applied.consents),
        (1, 1, 1)
    );
    assert_eq!(applied.objects, job.objects);
    let cleared = env.store.call(visited.call.id).await.unwrap().unwrap();
    assert_eq!(cleared.redaction_reason, Some(RedactionReason::Caller));
    assert_eq!(cleared.redacted_by.as_deref(), Some("cli"));
    assert_eq!(
        (
            cleared.caller_identity,
            cleared.caller_location,
            cleared.caller_bidx,
            cleared.recording
        ),
        (None, None, None, None)
    );
    assert_eq!(
        cleared.tracking_number, visited.call.tracking_number,
        "the fact stays"
    );
    let visit_left = &env.store.sessions(vec![session.id]).await.unwrap()[0];
    assert_eq!(
        (visit_left.visitor.as_ref(), visit_left.visitor_bidx),
        (None, None)
    );
    assert!(
        env.store
            .consents(account, Some(CALLER), None, 10)
            .await
            .unwrap()
            .is_empty(),
        "the caller's ledger leaves with them"
    );
    let held_now = env.store.call(held.call.id).await.unwrap().unwrap();
    assert_eq!(held_now.caller_identity, held.call.caller_identity);
    // The redacted call's call.created never leaves; the recipient is told of the erasure.
    let page = env
        .store
        .deliveries(DeliveryQuery {
            account_id: account,
            recipient_id: crm.id,
            state: None,
            event: None,
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    let created_for_redacted = page
        .iter()
        .find(|d| d.call_id == Some(visited.call.id))
        .expect("a call.created was queued");
    assert_eq!(created_for_redacted.state, DeliveryState::Cancelled);
    let erased: Vec<&DeliveryRow> = page
        .iter()
        .filter(|d| d.event == EventKind::CallerErased)
        .collect();
    assert_eq!(erased.len(), 1);
    let payload = erased[0].payload.as_deref().unwrap();
    assert!(payload.contains(&visited.call.id.to_string()));
    assert!(!payload.contains(&held.call.id.to_string()));
    // Applying again changes nothing.
    assert_eq!(apply_with_keys(&env, &job, true).await.unwrap().calls, 0);

    // The caller calls again: stored redacted on arrival.
    let later = new_call(account, "CA33", 5_000);
    let report = env.store.insert_calls(vec![later.clone()]).await.unwrap();
    assert_eq!(report.forgotten, vec![later.call.id]);
    let stored = env.store.call(later.call.id).await.unwrap().unwrap();
    assert_eq!(stored.redaction_reason, Some(RedactionReason::ForgetList));
    assert_eq!(stored.caller_identity, None);
    verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
}

/// Eight clients each storing three calls from [`CALLER`], one at a time, once `start`
/// opens (it waits for nine: the eight and whoever races them); the calls' ids.
fn eight_clients_calling(
    env: &Env,
    account: AccountId,
    round: u32,
    start: &std::sync::Arc<tokio::sync::Barrier>,
) -> impl std::future::Future<Output = Vec<CallId>> + use<> {
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let store = env.store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut ids = Vec::new();
                for i in 0..3 {
                    let call = new_call(account, &format!("CA{round}-{client}-{i}"), 1_000);
                    let report = store.insert_calls(vec![call]).await.unwrap();
                    ids.push(report.outcomes[0].id());
                }
                ids
            })
        })
        .collect();
    async move {
        let mut ids = Vec::new();
        for client in clients {
            ids.extend(client.await.unwrap());
        }
        ids
    }
}

pub async fn eight_clients_calling_from_one_number_during_its_forget_leave_no_call_unredacted(
    env: Env,
) {
    let agency = agency(&env, "Agency").await;
    for round in 0..20u32 {
        let account = account(&env, agency.id, "Business").await.id;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(9));
        let clients = eight_clients_calling(&env, account, round, &start);
        let redactor = {
            let store = env.store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let (job, _) = store
                    .begin_caller_redaction(
                        caller_job(account, &format!("job-{round}")),
                        vec![(account, CALLER)],
                    )
                    .await
                    .unwrap();
                let (signal, keys_gone) = KeysDestroyed::channel();
                signal.send(true);
                store
                    .apply_redaction(job, "cli".into(), keys_gone)
                    .await
                    .unwrap();
            })
        };
        let ids = clients.await;
        redactor.await.unwrap();
        let calls = env.store.calls_by_ids(ids.clone()).await.unwrap();
        assert_eq!(calls.len(), 24);
        let unredacted = calls.iter().filter(|c| c.redacted_at.is_none()).count();
        assert_eq!(unredacted, 0, "round {round}: a call escaped the forget");
        assert!(calls.iter().all(|c| c.caller_identity.is_none()));
    }
}

/// A withdrawal's removal as the call log asks for it: nothing chosen, nobody forgotten.
fn withdrawal_template(account: AccountId, id: &str) -> RedactionJob {
    RedactionJob {
        forget: vec![],
        subjects: vec![],
        audit: AuditEvent {
            actor: "cli".into(),
            action: "consent.withdrawn".into(),
            account_id: Some(account),
            details: "{}".into(),
            ..AuditEvent::default()
        },
        ..caller_job(account, id)
    }
}

pub async fn a_withdrawal_removes_the_category_from_the_subjects_calls_and_tells_recipients(
    env: Env,
) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let crm = recipient(account, "CRM", vec![EventKind::ConsentWithdrawn], 1_000);
    env.store
        .create_recipient(crm.clone(), event("recipient.created", Some(account)))
        .await
        .unwrap();
    let first = new_call(account, "CA41", 1_000);
    let held = new_call(account, "CA42", 2_000);
    env.store
        .insert_calls(vec![first.clone(), held.clone()])
        .await
        .unwrap();
    hold(&env, account, held.call.id).await;
    // A grant begins nothing.
    let grant = consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::Transcript,
        ConsentStatus::Granted,
    );
    let recorded = env
        .store
        .record_consent(grant, Some(withdrawal_template(account, "job-grant")))
        .await
        .unwrap();
    assert_eq!(recorded.job, None);
    assert!(recorded.seq > 0 && recorded.audit_seq > 0);

    let withdrawal = consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::CallerLocation,
        ConsentStatus::Withdrawn,
    );
    let recorded = env
        .store
        .record_consent(
            withdrawal.clone(),
            Some(withdrawal_template(account, "job-withdrawal")),
        )
        .await
        .unwrap();
    assert_eq!(recorded.skipped_legal_hold, 1);
    let job = recorded
        .job
        .expect("the removal begins with the withdrawal");
    assert_eq!(job.call_ids, vec![first.call.id]);
    assert_eq!(job.categories, vec![DataCategory::CallerLocation]);
    assert_eq!(job.reason, RedactionReason::ConsentWithdrawn);
    assert_eq!(
        env.store.pending_redactions().await.unwrap(),
        vec![job.clone()]
    );
    let applied = apply_with_keys(&env, &job, true).await.unwrap();
    assert_eq!(applied.calls, 1);
    let after = env.store.call(first.call.id).await.unwrap().unwrap();
    assert_eq!(after.caller_location, None);
    assert_eq!(
        after.caller_identity, first.call.caller_identity,
        "other categories stay"
    );
    assert_eq!(after.redacted_at, None, "the call itself stays");
    assert_eq!(
        env.store
            .call(held.call.id)
            .await
            .unwrap()
            .unwrap()
            .caller_location,
        held.call.caller_location
    );
    // The recipient hears of the withdrawal (the event's id and the call, never the caller).
    let told = env
        .store
        .deliveries(DeliveryQuery {
            account_id: account,
            recipient_id: crm.id,
            state: None,
            event: Some(EventKind::ConsentWithdrawn),
            before: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(told.len(), 1);
    let payload = told[0].payload.as_deref().unwrap();
    assert!(payload.contains(&withdrawal.id) && payload.contains(&first.call.id.to_string()));
    // The caller's next call arrives without the category.
    let later = new_call(account, "CA43", 5_000);
    let report = env.store.insert_calls(vec![later]).await.unwrap();
    assert_eq!(report.withheld, vec![vec![DataCategory::CallerLocation]]);
    verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
}

pub async fn a_withdrawal_during_eight_clients_ingest_of_its_subject_leaves_no_call_with_withdrawn_data(
    env: Env,
) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    for round in 0..20u32 {
        let account = account(&env, agency.id, "Business").await.id;
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(9));
        let clients = eight_clients_calling(&env, account, round, &start);
        let withdrawer = {
            let store = env.store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let recorded = store
                    .record_consent(
                        consent(
                            account,
                            SubjectKind::Caller,
                            CALLER,
                            DataCategory::CallerIdentity,
                            ConsentStatus::Withdrawn,
                        ),
                        Some(withdrawal_template(account, &format!("job-{round}"))),
                    )
                    .await
                    .unwrap();
                if let Some(job) = recorded.job {
                    let (signal, keys_gone) = KeysDestroyed::channel();
                    signal.send(true);
                    store
                        .apply_redaction(job, "cli".into(), keys_gone)
                        .await
                        .unwrap();
                }
            })
        };
        let ids = clients.await;
        withdrawer.await.unwrap();
        let calls = env.store.calls_by_ids(ids).await.unwrap();
        assert_eq!(calls.len(), 24);
        let kept = calls.iter().filter(|c| c.caller_identity.is_some()).count();
        assert_eq!(kept, 0, "round {round}: a call kept withdrawn data");
        assert!(
            calls.iter().all(|c| c.caller_location.is_some()),
            "only the category goes"
        );
    }
}

pub async fn a_notice_is_numbered_per_category_and_frozen_once_a_consent_refers_to_it(env: Env) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    // Eight administrators adding a recording notice at once get eight numbers.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = env.store.clone();
            tokio::spawn(async move {
                store
                    .create_notice(
                        account,
                        DataCategory::Recording,
                        format!("Calls are recorded (draft {i})."),
                        event("notice.created", Some(account)),
                    )
                    .await
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for w in writers {
        versions.push(w.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
    // Another category starts at 1.
    let location = env
        .store
        .create_notice(
            account,
            DataCategory::CallerLocation,
            "We keep the caller's area.".into(),
            event("notice.created", Some(account)),
        )
        .await
        .unwrap();
    assert_eq!(location.version, 1);
    // Unused, it may be edited.
    let edited = env
        .store
        .update_notice(
            account,
            DataCategory::CallerLocation,
            1,
            "We keep the caller's town.".into(),
            event("notice.updated", Some(account)),
        )
        .await
        .unwrap();
    assert_eq!(edited.text, "We keep the caller's town.");
    assert_eq!(edited.used_at, None);
    // Once a consent names it, it is frozen.
    let mut grant = consent(
        account,
        SubjectKind::Caller,
        CALLER,
        DataCategory::CallerLocation,
        ConsentStatus::Granted,
    );
    grant.notice_version = Some(1);
    env.store.record_consent(grant, None).await.unwrap();
    assert!(matches!(
        env.store
            .update_notice(
                account,
                DataCategory::CallerLocation,
                1,
                "Changed after the fact.".into(),
                event("notice.updated", Some(account)),
            )
            .await,
        Err(StoreError::NoticeInUse)
    ));
    assert!(matches!(
        env.store
            .update_notice(
                account,
                DataCategory::CallerLocation,
                2,
                "No such version.".into(),
                event("notice.updated", Some(account)),
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    let listed = env.store.notices(account).await.unwrap();
    let frozen = listed
        .iter()
        .find(|n| n.category == DataCategory::CallerLocation)
        .unwrap();
    assert_eq!(frozen.text, "We keep the caller's town.");
    assert!(frozen.used_at.is_some());
    assert_eq!(listed.len(), 9);
    let entries = env
        .store
        .audit(AuditQuery {
            agency_id: None,
            account_id: Some(account),
            after_seq: None,
            before_seq: None,
            limit: 100,
        })
        .await
        .unwrap();
    let notice_entries: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.event.action.starts_with("notice."))
        .collect();
    assert_eq!(notice_entries.len(), 10, "nine created, one edited");
    assert!(
        notice_entries
            .iter()
            .all(|e| !e.event.details.contains("Calls are recorded"))
    );
    verify_journal(env.store.as_ref(), None)
        .await
        .unwrap()
        .expect("the chain verifies");
}

pub async fn eight_failed_sign_ins_at_once_each_count_and_the_fifth_locks_the_user(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await;
    let scope = Scope::Account {
        agency: agency.id,
        account: account.id,
    };
    let ada = user(scope, 7);
    env.store
        .create_user(ada.clone(), event("user.created", Some(account.id)))
        .await
        .unwrap();
    let now = 1_700_000_100_000;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let store = env.store.clone();
            tokio::spawn(async move {
                store
                    .record_login_failure(ada.id, at(now), 5, 900_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for a in attempts {
        outcomes.push(a.await.unwrap());
    }
    // Counted one after the other: 1, 2, 3, 4, locked (count starts again), 1, 2, 3.
    let locks: Vec<_> = outcomes.iter().filter_map(|o| o.locked_until).collect();
    assert_eq!(locks, vec![at(now + 900_000)]);
    let mut counts: Vec<u32> = outcomes.iter().map(|o| o.failed_logins).collect();
    counts.sort();
    assert_eq!(counts, vec![0, 1, 1, 2, 2, 3, 3, 4]);
    let stored = env.store.user(ada.id).await.unwrap().unwrap();
    assert_eq!(stored.failed_logins, 3);
    assert_eq!(
        stored.locked_until,
        Some(at(now + 900_000)),
        "later failures keep the lock"
    );
    assert!(matches!(
        env.store
            .record_login_failure(UserId::generate(), at(now), 5, 900_000)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn due_calls_are_the_old_live_unheld_ones_in_scope_oldest_first(env: Env) {
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let oldest = new_call(account, "CA51", 1_000);
    let held = new_call(account, "CA52", 2_000);
    let mut out_of_scope = new_call(account, "CA53", 3_000);
    out_of_scope.call.gdpr_scope = Some(false);
    let mut transcribed = new_call(account, "CA54", 4_000);
    transcribed.call.transcript = Some(vec![0x7a; 40]);
    let recent = new_call(account, "CA55", 9_000);
    env.store
        .insert_calls(vec![
            recent.clone(),
            transcribed.clone(),
            out_of_scope.clone(),
            held.clone(),
            oldest.clone(),
        ])
        .await
        .unwrap();
    hold(&env, account, held.call.id).await;
    let q = DueQuery {
        account_id: account,
        before: at(5_000),
        gdpr_only: false,
        category: None,
        not_before: None,
        limit: 10,
    };
    let ids = |calls: Vec<CallRow>| calls.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(env.store.due_calls(q).await.unwrap()),
        vec![oldest.call.id, out_of_scope.call.id, transcribed.call.id],
        "the held call is exempt, the recent one not due yet"
    );
    assert_eq!(env.store.count_due(q).await.unwrap(), 3);
    let limited = DueQuery { limit: 2, ..q };
    assert_eq!(
        ids(env.store.due_calls(limited).await.unwrap()),
        vec![oldest.call.id, out_of_scope.call.id]
    );
    let gdpr = DueQuery {
        gdpr_only: true,
        ..q
    };
    assert_eq!(
        ids(env.store.due_calls(gdpr).await.unwrap()),
        vec![oldest.call.id, transcribed.call.id]
    );
    assert_eq!(env.store.count_due(gdpr).await.unwrap(), 2);
    let transcripts = DueQuery {
        category: Some(DataCategory::Transcript),
        ..q
    };
    assert_eq!(
        ids(env.store.due_calls(transcripts).await.unwrap()),
        vec![transcribed.call.id]
    );
    let window = DueQuery {
        not_before: Some(at(3_000)),
        ..q
    };
    assert_eq!(env.store.count_due(window).await.unwrap(), 2);
    // Another account's calls are never due here.
    let other = account_of(&env, agency.id).await;
    assert_eq!(
        env.store
            .count_due(DueQuery {
                account_id: other,
                ..q
            })
            .await
            .unwrap(),
        0
    );
}

pub async fn a_recording_is_attached_only_as_consent_allows_and_never_to_a_redacted_call(env: Env) {
    use ringfence_core::consent::{ConsentStatus, SubjectKind};
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let call = new_call(account, "CA61", 1_000);
    env.store.insert_calls(vec![call.clone()]).await.unwrap();
    let wav = |name: &str| RecordingRow {
        object: format!("recordings/{account}/{name}.wav"),
        content_type: "audio/wav".into(),
        bytes: 8_192,
    };
    // Opt-in: no granted consent yet, refused.
    assert!(matches!(
        env.store
            .set_recording(
                call.call.id,
                Some(wav("a")),
                Some(RecordingConsent::Granted)
            )
            .await,
        Err(StoreError::ConsentRequired {
            index: 0,
            category: DataCategory::Recording
        })
    ));
    // Without a check (or unless withdrawn, nothing withdrawn), attached; the previous one
    // comes back when replaced.
    assert_eq!(
        env.store
            .set_recording(
                call.call.id,
                Some(wav("a")),
                Some(RecordingConsent::UnlessWithdrawn)
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        env.store
            .set_recording(call.call.id, Some(wav("b")), None)
            .await
            .unwrap(),
        Some(wav("a"))
    );
    assert_eq!(
        env.store
            .call(call.call.id)
            .await
            .unwrap()
            .unwrap()
            .recording,
        Some(wav("b"))
    );
    // The caller withdraws recording consent: unless-withdrawn refuses now.
    env.store
        .record_consent(
            consent(
                account,
                SubjectKind::Caller,
                CALLER,
                DataCategory::Recording,
                ConsentStatus::Withdrawn,
            ),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(
        env.store
            .set_recording(
                call.call.id,
                Some(wav("c")),
                Some(RecordingConsent::UnlessWithdrawn)
            )
            .await,
        Err(StoreError::ConsentRequired { .. })
    ));
    // Clearing is always allowed.
    assert_eq!(
        env.store
            .set_recording(call.call.id, None, None)
            .await
            .unwrap(),
        Some(wav("b"))
    );
    // A redacted call takes no recording; an unknown call is not found.
    let (job, _) = env
        .store
        .begin_caller_redaction(caller_job(account, "job-rec"), vec![(account, CALLER)])
        .await
        .unwrap();
    apply_with_keys(&env, &job, true).await.unwrap();
    assert!(matches!(
        env.store
            .set_recording(call.call.id, Some(wav("d")), None)
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        env.store
            .set_recording(CallId::generate(), Some(wav("e")), None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

fn wrapped_key(id: &str, master: &str, byte: u8) -> ringfence_crypto::KeyRecord {
    ringfence_crypto::KeyRecord {
        id: id.into(),
        account_id: "acc".into(),
        purpose: KeyPurpose::Call,
        wrapped: vec![byte; 60],
        master: master.into(),
    }
}

pub async fn a_master_key_rotation_rewraps_every_row_and_retires_the_old_key_only_when_none_is_left(
    env: Env,
) {
    use ringfence_crypto::{MasterKeyState, Rewrap, VaultError};
    let vault = &env.vault;
    assert!(vault.master_key_status().await.unwrap().keys.is_empty());
    // The first insert registers its key as the active one.
    vault
        .insert(vec![
            wrapped_key("call:01", "fp-a", 1),
            wrapped_key("call:02", "fp-a", 2),
        ])
        .await
        .unwrap();
    let status = vault.master_key_status().await.unwrap();
    assert_eq!(status.active(), Some("fp-a"));
    // Rows under another key are refused whole.
    assert!(matches!(
        vault.insert(vec![wrapped_key("call:03", "fp-b", 3)]).await,
        Err(VaultError::StaleMasterKey { newest }) if newest == "fp-a"
    ));
    assert!(matches!(
        vault.begin_rotation("fp-x".into(), "fp-b".into()).await,
        Err(VaultError::Rotation(_))
    ));
    assert_eq!(
        vault
            .begin_rotation("fp-a".into(), "fp-b".into())
            .await
            .unwrap(),
        2
    );
    // Resuming the same rotation is allowed; another target is not.
    assert_eq!(
        vault
            .begin_rotation("fp-a".into(), "fp-b".into())
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        vault.begin_rotation("fp-a".into(), "fp-c".into()).await,
        Err(VaultError::Rotation(_))
    ));
    // New keys go under the pending key from now on.
    assert!(matches!(
        vault.insert(vec![wrapped_key("call:03", "fp-a", 3)]).await,
        Err(VaultError::StaleMasterKey { newest }) if newest == "fp-b"
    ));
    vault
        .insert(vec![wrapped_key("call:03", "fp-b", 3)])
        .await
        .unwrap();
    assert_eq!(
        vault
            .finish_rotation("fp-a".into(), "fp-b".into(), 0)
            .await
            .unwrap(),
        2,
        "two rows are still under the old key"
    );
    let old = vault
        .wrapped_by_other("fp-b".into(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        old.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["call:01", "call:02"]
    );
    // A row destroyed during the rotation is not brought back by its re-wrap.
    assert_eq!(vault.destroy(vec!["call:02".into()]).await.unwrap(), 1);
    let changes: Vec<Rewrap> = old
        .iter()
        .map(|r| Rewrap {
            id: r.id.clone(),
            old_wrapped: r.wrapped.clone(),
            new_wrapped: vec![0xbb; 60],
        })
        .collect();
    assert_eq!(
        vault.rewrap("fp-b".into(), changes.clone()).await.unwrap(),
        1
    );
    assert!(
        vault
            .fetch(vec!["call:02".into()])
            .await
            .unwrap()
            .is_empty()
    );
    // The compare-and-set: applied again, nothing matches.
    assert_eq!(vault.rewrap("fp-b".into(), changes).await.unwrap(), 0);
    let rewrapped = vault.fetch(vec!["call:01".into()]).await.unwrap();
    assert_eq!(
        (rewrapped[0].master.as_str(), rewrapped[0].wrapped.clone()),
        ("fp-b", vec![0xbb; 60])
    );
    assert_eq!(
        vault
            .finish_rotation("fp-a".into(), "fp-b".into(), 1)
            .await
            .unwrap(),
        0
    );
    let status = vault.master_key_status().await.unwrap();
    assert_eq!(status.active(), Some("fp-b"));
    assert!(
        status
            .keys
            .iter()
            .any(|k| k.fingerprint == "fp-a" && k.state == MasterKeyState::Retired)
    );
    let last = status.last_rotation.expect("the rotation is recorded");
    assert_eq!(
        (last.from.as_str(), last.to.as_str(), last.rewrapped),
        ("fp-a", "fp-b", 1)
    );
    assert!(last.finished_at_millis.is_some());
    // Finishing again changes nothing; a retired key never comes back.
    assert_eq!(
        vault
            .finish_rotation("fp-a".into(), "fp-b".into(), 1)
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        vault.begin_rotation("fp-b".into(), "fp-a".into()).await,
        Err(VaultError::Rotation(_))
    ));
    assert!(matches!(
        vault.insert(vec![wrapped_key("call:04", "fp-a", 4)]).await,
        Err(VaultError::StaleMasterKey { newest }) if newest == "fp-b"
    ));
}

/// A call from `number` with the caller's consent to recording and transcript sent inline.
fn call_with_consent(
    number: &ringfence_core::E164,
    external_id: String,
) -> ringfence_core::call::NewCall {
    use ringfence_core::Personal;
    use ringfence_core::call::{CallerIdentity, CallerLocation, InteractionContent, NewCall};
    use ringfence_core::consent::{ConsentMethod, ConsentStatus, InlineConsent};
    let consent = |category| InlineConsent {
        category,
        status: ConsentStatus::Granted,
        method: ConsentMethod::IvrKeypress,
        notice_version: None,
    };
    NewCall {
        external_id: Some(external_id),
        started_at: Timestamp::now(),
        duration_s: Some(60),
        direction: None,
        status: None,
        tracking_number: ringfence_core::phone::parse_e164("+14155550100").unwrap(),
        source: Some("google_ads".into()),
        campaign: None,
        utm: Default::default(),
        caller: CallerIdentity {
            number: Some(number.clone()),
            name: Some(Personal::new("Erika Mustermann".into())),
            forwarded_from: None,
        },
        location: CallerLocation {
            city: Some(Personal::new("London".into())),
            region: None,
            postal_code: None,
            country: None,
        },
        transcript: Some(Personal::new("Hello, I would like a quote.".into())),
        interaction: InteractionContent {
            notes: None,
            tags: Personal::new(Vec::new()),
        },
        session_id: None,
        visitor: None,
        consents: vec![
            consent(DataCategory::Recording),
            consent(DataCategory::Transcript),
        ],
    }
}

/// Issue 18: a caller's erasure destroys their consent subject's key; a call arriving with
/// consents issues it again, and an erasure landing between that issue and its read used to
/// fail the ingest ("a key just issued is not in the vault"). Eight clients ingest with
/// consent from one number while it is erased and forgotten ten times a round.
pub async fn ingest_with_consent_while_its_caller_is_erased_never_fails_and_keeps_nothing_of_them(
    env: Env,
) {
    use ringfence_store::{CallLog, ConsentSubject, IngestPolicy};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (master, _) = MasterKey::generate();
    let log = Arc::new(CallLog::new(
        env.store.clone(),
        Vault::new(master, env.vault.clone()),
        ringfence_store::Blobs::local(&dir.path().join("recordings")).unwrap(),
    ));
    let agency = agency(&env, "Agency").await;
    let number = ringfence_core::phone::parse_e164("+442079460601").unwrap();
    for round in 0..3u32 {
        let account = account(&env, agency.id, "Business").await.id;
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU32::new(0));
        let clients: Vec<_> = (0..8u32)
            .map(|client| {
                let (log, number) = (log.clone(), number.clone());
                let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    let policy = IngestPolicy {
                        collection: CollectionSettings::collect_all(),
                        actor: format!("client-{client}"),
                    };
                    let mut n = 0u32;
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let call = call_with_consent(&number, format!("r{round}-c{client}-{n}"));
                        if let Err(e) = log.ingest_calls(account, vec![call], &policy).await {
                            failures.push(e.to_string());
                        }
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    failures
                })
            })
            .collect();
        for _ in 0..10 {
            let floor = acknowledged.load(Ordering::Relaxed) + 16;
            while acknowledged.load(Ordering::Relaxed) < floor {
                tokio::task::yield_now().await;
            }
            log.redact_caller(
                &[account],
                &number,
                true,
                event("caller.redacted", Some(account)),
            )
            .await
            .expect("the erasure succeeds");
        }
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            let failures = client.await.unwrap();
            assert!(
                failures.is_empty(),
                "{}, round {round}: {} ingests failed, the first: {}",
                env.backend,
                failures.len(),
                failures[0]
            );
        }
        let count = |redacted| {
            env.store.count_calls(CallQuery {
                account_id: account,
                redacted,
                from: None,
                to: None,
                tracking_number: None,
                source: None,
                status: None,
                caller_bidx: None,
                after: None,
                limit: 1,
            })
        };
        let all = count(None).await.unwrap();
        assert!(all >= 160, "{}, round {round}: {all} calls", env.backend);
        let kept = count(Some(false)).await.unwrap();
        assert_eq!(
            kept, 0,
            "{}, round {round}: calls of an erased caller kept their data",
            env.backend
        );
        let consents = log
            .consents(
                account,
                Some(&ConsentSubject::Caller(number.clone())),
                None,
                1_000,
            )
            .await
            .unwrap();
        assert!(
            consents.is_empty(),
            "{}, round {round}: {} consents of an erased caller kept",
            env.backend,
            consents.len()
        );
    }
}

/// The env's vault store, through which an erasure of one caller runs right after a consent
/// subject's key is inserted, before the call log reads the key back: the moment the race
/// of issue 18 needs, made certain.
struct ErasureAfterSubjectKeyInsert {
    inner: std::sync::Arc<dyn ringfence_crypto::VaultStore>,
    /// The call log to erase through (set once it is built over this store).
    log: std::sync::OnceLock<std::sync::Weak<ringfence_store::CallLog>>,
    caller: (AccountId, ringfence_core::E164),
    /// Erasures left to run.
    armed: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ringfence_crypto::VaultStore for ErasureAfterSubjectKeyInsert {
    async fn insert(
        &self,
        records: Vec<ringfence_crypto::KeyRecord>,
    ) -> Result<(), ringfence_crypto::VaultError> {
        use std::sync::atomic::Ordering;
        let subject = records.iter().any(|r| r.purpose == KeyPurpose::Subject);
        self.inner.insert(records).await?;
        let armed = self
            .armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if subject && armed {
            let log = self
                .log
                .get()
                .and_then(|l| l.upgrade())
                .expect("the call log");
            let (account, number) = &self.caller;
            log.redact_caller(
                &[*account],
                number,
                true,
                event("caller.redacted", Some(*account)),
            )
            .await
            .expect("the erasure succeeds");
        }
        Ok(())
    }
    async fn fetch(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<ringfence_crypto::KeyRecord>, ringfence_crypto::VaultError> {
        self.inner.fetch(ids).await
    }
    async fn destroy(&self, ids: Vec<String>) -> Result<u64, ringfence_crypto::VaultError> {
        self.inner.destroy(ids).await
    }
    async fn list(
        &self,
        purpose: KeyPurpose,
        created_before_millis: i64,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, ringfence_crypto::VaultError> {
        self.inner
            .list(purpose, created_before_millis, after, limit)
            .await
    }
    async fn anchor_journal(
        &self,
        seq: i64,
        hash: [u8; 32],
    ) -> Result<(), ringfence_crypto::VaultError> {
        self.inner.anchor_journal(seq, hash).await
    }
    async fn journal_anchor(
        &self,
    ) -> Result<Option<(i64, [u8; 32])>, ringfence_crypto::VaultError> {
        self.inner.journal_anchor().await
    }
    async fn compact(&self) -> Result<(), ringfence_crypto::VaultError> {
        self.inner.compact().await
    }
    async fn ping(&self) -> Result<(), ringfence_crypto::VaultError> {
        self.inner.ping().await
    }
    async fn master_key_status(
        &self,
    ) -> Result<ringfence_crypto::MasterKeyStatus, ringfence_crypto::VaultError> {
        self.inner.master_key_status().await
    }
    async fn adopt_master_key(
        &self,
        fingerprint: String,
    ) -> Result<(), ringfence_crypto::VaultError> {
        self.inner.adopt_master_key(fingerprint).await
    }
    async fn begin_rotation(
        &self,
        from: String,
        to: String,
    ) -> Result<u64, ringfence_crypto::VaultError> {
        self.inner.begin_rotation(from, to).await
    }
    async fn wrapped_by_other(
        &self,
        to: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<ringfence_crypto::KeyRecord>, ringfence_crypto::VaultError> {
        self.inner.wrapped_by_other(to, after, limit).await
    }
    async fn rewrap(
        &self,
        to: String,
        changes: Vec<ringfence_crypto::Rewrap>,
    ) -> Result<u64, ringfence_crypto::VaultError> {
        self.inner.rewrap(to, changes).await
    }
    async fn finish_rotation(
        &self,
        from: String,
        to: String,
        rewrapped: u64,
    ) -> Result<u64, ringfence_crypto::VaultError> {
        self.inner.finish_rotation(from, to, rewrapped).await
    }
}

/// Issue 18, made certain: a caller's erasure runs between the insert of their consent
/// subject's key (issued by a call arriving with consents) and the call log's read of it.
/// The ingest succeeds, and the call is stored redacted without its consents.
pub async fn an_erasure_between_a_subject_keys_issue_and_its_read_fails_no_ingest_and_keeps_nothing(
    env: Env,
) {
    use ringfence_store::{CallLog, ConsentSubject, IngestPolicy};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let agency = agency(&env, "Agency").await;
    let account = account(&env, agency.id, "Business").await.id;
    let number = ringfence_core::phone::parse_e164("+442079460602").unwrap();
    let vault = Arc::new(ErasureAfterSubjectKeyInsert {
        inner: env.vault.clone(),
        log: std::sync::OnceLock::new(),
        caller: (account, number.clone()),
        armed: std::sync::atomic::AtomicU32::new(3),
    });
    let (master, _) = MasterKey::generate();
    let log = Arc::new(CallLog::new(
        env.store.clone(),
        Vault::new(master, vault.clone()),
        ringfence_store::Blobs::local(&dir.path().join("recordings")).unwrap(),
    ));
    assert!(vault.log.set(Arc::downgrade(&log)).is_ok());
    let policy = IngestPolicy {
        collection: CollectionSettings::collect_all(),
        actor: "client".into(),
    };
    // Each ingest issues the key again (the erasure before destroyed it) and meets an
    // erasure between its issue and its read.
    for n in 0..3 {
        let call = call_with_consent(&number, format!("erased-{n}"));
        let ingested = log
            .ingest_calls(account, vec![call], &policy)
            .await
            .unwrap_or_else(|e| panic!("{}, call {n}: {e}", env.backend));
        assert_eq!(ingested.len(), 1);
    }
    assert_eq!(
        vault.armed.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every ingest met an erasure"
    );
    let calls = env
        .store
        .count_calls(CallQuery {
            account_id: account,
            redacted: Some(false),
            from: None,
            to: None,
            tracking_number: None,
            source: None,
            status: None,
            caller_bidx: None,
            after: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        calls, 0,
        "{}: a call of the erased caller kept their data",
        env.backend
    );
    let consents = log
        .consents(account, Some(&ConsentSubject::Caller(number)), None, 100)
        .await
        .unwrap();
    assert!(consents.is_empty(), "{}: consents kept", env.backend);
}
