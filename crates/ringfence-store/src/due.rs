//! Which calls automatic redaction may take, written once as the condition every SQL backend
//! puts in its query (the backends differ only in how they spell a parameter).
//!
//! A call is due when it belongs to the account, started before the cutoff, is not redacted,
//! is not on legal hold (GDPR Art. 17(3)(e): a held call is never due, whatever its age), has
//! not been passed by the sweep, is in GDPR scope (or of unknown scope) when the policy asks
//! only for those, started at or after `not_before` when given, and — for the removal of one
//! category — still holds a column of that category (named by the data map).

use ringfence_core::datamap::{Entity, columns_of};

use crate::records::DueQuery;

/// The `WHERE` clause of the due calls of `q`. `param(n)` spells the backend's n-th
/// parameter; the caller binds 1: the account, 2: the cutoff (ms), 3: `gdpr_only` (a boolean),
/// 5: `not_before` (ms, or NULL); 4 is left for the statement's limit. The clause is valid
/// SQL on SQLite and PostgreSQL (a boolean column compared as truth value).
pub fn due_condition(q: &DueQuery, param: impl Fn(u8) -> String) -> String {
    let (account, before, gdpr_only, not_before) = (param(1), param(2), param(3), param(5));
    let mut sql = format!(
        "WHERE account_id = {account} AND swept IS NULL AND legal_hold_at IS NULL \
         AND started_at < {before} AND redacted_at IS NULL \
         AND (NOT {gdpr_only} OR gdpr_scope IS NULL OR gdpr_scope) \
         AND ({not_before} IS NULL OR started_at >= {not_before})"
    );
    if let Some(category) = q.category {
        let holds: Vec<String> = columns_of(Entity::Call, category)
            .iter()
            .map(|c| format!("{c} IS NOT NULL"))
            .collect();
        if !holds.is_empty() {
            sql.push_str(&format!(" AND ({})", holds.join(" OR ")));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_core::AccountId;
    use ringfence_core::DataCategory;
    use ringfence_core::timestamp::Timestamp;

    fn query(category: Option<DataCategory>) -> DueQuery {
        DueQuery {
            account_id: AccountId::generate(),
            before: Timestamp::from_millis(1_000),
            gdpr_only: false,
            category,
            not_before: None,
            limit: 10,
        }
    }

    #[test]
    fn a_held_call_is_never_due_and_a_category_removal_needs_a_column_of_it() {
        let whole = due_condition(&query(None), |n| format!("${n}"));
        assert!(whole.contains("legal_hold_at IS NULL"));
        assert!(!whole.contains("transcript"));
        let transcript = due_condition(&query(Some(DataCategory::Transcript)), |n| format!("?{n}"));
        assert!(transcript.contains("legal_hold_at IS NULL"));
        assert!(transcript.ends_with("AND (transcript IS NOT NULL)"));
        assert!(transcript.contains("account_id = ?1"));
    }
}
