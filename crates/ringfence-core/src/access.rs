//! Roles, tenants and the one rule of who may do what.
//!
//! A principal sees an account when its scope covers it; seeing is checked before the role,
//! and a principal that cannot see a tenant is told "not found", never "forbidden", so ids
//! of other tenants reveal nothing.

use std::fmt;

use crate::ids::{AccountId, AgencyId, TokenId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The installation's administrator: every agency and account.
    Admin,
    /// An agency's administrator: every account of that agency and the agency's settings.
    AgencyAdmin,
    /// A business's administrator: one account.
    AccountAdmin,
    /// Reads the call log; sees personal data only when the token allows it.
    Analyst,
    /// Sends calls, sessions and recordings; reads nothing.
    Ingest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::AgencyAdmin,
        Role::AccountAdmin,
        Role::Analyst,
        Role::Ingest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::AgencyAdmin => "agency_admin",
            Role::AccountAdmin => "account_admin",
            Role::Analyst => "analyst",
            Role::Ingest => "ingest",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::AgencyAdmin => true,
            Role::AccountAdmin => !matches!(permission, ManageAgency),
            Role::Analyst => matches!(permission, ReadCalls | ReadRecording),
            Role::Ingest => matches!(permission, Ingest),
        }
    }

    /// How much a role may do, for the rule that no one grants more than they hold.
    fn rank(self) -> u8 {
        match self {
            Role::Admin => 4,
            Role::AgencyAdmin => 3,
            Role::AccountAdmin => 2,
            Role::Analyst => 1,
            Role::Ingest => 0,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Post calls, sessions, recordings.
    Ingest,
    /// Read the call log.
    ReadCalls,
    /// Play a recording.
    ReadRecording,
    /// Change an account's settings.
    ManageAccount,
    /// Redact calls and callers.
    Redact,
    /// Change an agency's settings.
    ManageAgency,
    /// List and revoke tokens, manage users (within the principal's scope).
    ManageAccess,
}

/// Where a principal's token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Installation,
    Agency(AgencyId),
    Account {
        agency: AgencyId,
        account: AccountId,
    },
}

/// An account together with the agency it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub agency: AgencyId,
    pub account: AccountId,
}

/// The authenticated caller of an API request or CLI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Option<TokenId>,
    /// The signed-in user of a web session (then `token_id` is `None`).
    pub user_id: Option<UserId>,
    pub role: Role,
    pub scope: Scope,
    /// Whether personal data is shown unmasked to this principal.
    pub personal_data: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The principal cannot see the tenant at all: answer as if it did not exist.
    #[error("not found")]
    NotFound,
    /// The principal sees the tenant but its role may not do this.
    #[error("the token's role may not do this")]
    Forbidden,
}

/// A role and scope that do not fit together (e.g. an account admin for a whole agency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("role {role} needs {needs}")]
pub struct InvalidScope {
    pub role: Role,
    pub needs: &'static str,
}

impl Principal {
    /// Who acted, as the journal names it: `token:<id>`, `user:<id>`, or `cli`.
    pub fn actor(&self) -> String {
        match (self.token_id, self.user_id) {
            (Some(t), _) => format!("token:{t}"),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => "cli".into(),
        }
    }

    /// The command line acts with the installation's full authority.
    pub fn operator() -> Self {
        Principal {
            token_id: None,
            user_id: None,
            role: Role::Admin,
            scope: Scope::Installation,
            personal_data: true,
        }
    }

    /// Checks that `role` may be given `scope`.
    pub fn validate_scope(role: Role, scope: &Scope) -> Result<(), InvalidScope> {
        let ok = match role {
            Role::Admin => matches!(scope, Scope::Installation),
            Role::AgencyAdmin => matches!(scope, Scope::Agency(_)),
            Role::AccountAdmin => matches!(scope, Scope::Account { .. }),
            Role::Analyst | Role::Ingest => !matches!(scope, Scope::Installation),
        };
        if ok {
            Ok(())
        } else {
            let needs = match role {
                Role::Admin => "no agency or account",
                Role::AgencyAdmin => "an agency",
                Role::AccountAdmin => "an account",
                Role::Analyst | Role::Ingest => "an agency or an account",
            };
            Err(InvalidScope { role, needs })
        }
    }

    pub fn sees_account(&self, tenant: &Tenant) -> bool {
        match self.scope {
            Scope::Installation => true,
            Scope::Agency(agency) => agency == tenant.agency,
            Scope::Account { account, .. } => account == tenant.account,
        }
    }

    pub fn sees_agency(&self, agency: AgencyId) -> bool {
        match self.scope {
            Scope::Installation => true,
            Scope::Agency(a) => a == agency,
            // An account's principals see their agency only through their account.
            Scope::Account { .. } => false,
        }
    }

    /// May this principal do `permission` on `tenant`'s data?
    pub fn check(&self, permission: Permission, tenant: &Tenant) -> Result<(), Denied> {
        if !self.sees_account(tenant) {
            return Err(Denied::NotFound);
        }
        if !self.role.allows(permission) {
            return Err(Denied::Forbidden);
        }
        Ok(())
    }

    /// Does this principal's scope cover everything `target` reaches? An installation's
    /// principals cover all; an agency's its own scope and its accounts'; an account's only
    /// that account's.
    pub fn covers(&self, target: &Scope) -> bool {
        match (self.scope, target) {
            (Scope::Installation, _) => true,
            (Scope::Agency(mine), Scope::Agency(theirs)) => mine == *theirs,
            (Scope::Agency(mine), Scope::Account { agency, .. }) => mine == *agency,
            (Scope::Account { account: mine, .. }, Scope::Account { account, .. }) => {
                mine == *account
            }
            _ => false,
        }
    }

    /// May this principal manage a token or user of scope `target`? One it does not cover
    /// is not found; one it covers without the role is forbidden.
    pub fn check_access(&self, target: &Scope) -> Result<(), Denied> {
        if !self.covers(target) {
            return Err(Denied::NotFound);
        }
        if !self.role.allows(Permission::ManageAccess) {
            return Err(Denied::Forbidden);
        }
        Ok(())
    }

    /// May this principal give `role` to a user of scope `target`? The role must fit the
    /// scope (`validate_scope`) and be no more than the principal's own, so no token or user
    /// can make anyone more powerful than itself.
    pub fn may_grant(&self, role: Role, target: &Scope) -> Result<(), Denied> {
        self.check_access(target)?;
        if role.rank() > self.role.rank() || Self::validate_scope(role, target).is_err() {
            return Err(Denied::Forbidden);
        }
        Ok(())
    }

    /// May this principal do `permission` on the agency itself (its settings)?
    pub fn check_agency(&self, permission: Permission, agency: AgencyId) -> Result<(), Denied> {
        if !self.sees_agency(agency) {
            return Err(Denied::NotFound);
        }
        if !self.role.allows(permission) {
            return Err(Denied::Forbidden);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn principal(role: Role, scope: Scope) -> Principal {
        Principal {
            token_id: None,
            user_id: None,
            role,
            scope,
            personal_data: true,
        }
    }

    #[test]
    fn each_role_may_do_exactly_its_permissions_on_its_own_tenant() {
        let agency = AgencyId::generate();
        let account = AccountId::generate();
        let tenant = Tenant { agency, account };
        let own = |role| match role {
            Role::Admin => Scope::Installation,
            Role::AgencyAdmin => Scope::Agency(agency),
            _ => Scope::Account { agency, account },
        };
        let table: [(Role, &[Permission]); 5] = [
            (
                Role::Admin,
                &[
                    Ingest,
                    ReadCalls,
                    ReadRecording,
                    ManageAccount,
                    Redact,
                    ManageAgency,
                    ManageAccess,
                ],
            ),
            (
                Role::AgencyAdmin,
                &[
                    Ingest,
                    ReadCalls,
                    ReadRecording,
                    ManageAccount,
                    Redact,
                    ManageAgency,
                    ManageAccess,
                ],
            ),
            (
                Role::AccountAdmin,
                &[
                    Ingest,
                    ReadCalls,
                    ReadRecording,
                    ManageAccount,
                    Redact,
                    ManageAccess,
                ],
            ),
            (Role::Analyst, &[ReadCalls, ReadRecording]),
            (Role::Ingest, &[Ingest]),
        ];
        for (role, allowed) in table {
            let p = principal(role, own(role));
            for permission in [
                Ingest,
                ReadCalls,
                ReadRecording,
                ManageAccount,
                Redact,
                ManageAgency,
                ManageAccess,
            ] {
                let expected = if allowed.contains(&permission) {
                    Ok(())
                } else {
                    Err(Denied::Forbidden)
                };
                assert_eq!(
                    p.check(permission, &tenant),
                    expected,
                    "{role} {permission:?}"
                );
            }
        }
    }

    #[test]
    fn other_tenants_are_not_found_whatever_the_role() {
        let (agency, other_agency) = (AgencyId::generate(), AgencyId::generate());
        let (account, sibling, foreign) = (
            AccountId::generate(),
            AccountId::generate(),
            AccountId::generate(),
        );
        let cases = [
            (
                principal(Role::AgencyAdmin, Scope::Agency(agency)),
                Tenant {
                    agency: other_agency,
                    account: foreign,
                },
            ),
            (
                principal(Role::AccountAdmin, Scope::Account { agency, account }),
                Tenant {
                    agency,
                    account: sibling,
                },
            ),
            (
                principal(Role::Analyst, Scope::Agency(agency)),
                Tenant {
                    agency: other_agency,
                    account: foreign,
                },
            ),
            (
                principal(Role::Ingest, Scope::Account { agency, account }),
                Tenant {
                    agency,
                    account: sibling,
                },
            ),
        ];
        for (p, tenant) in cases {
            assert_eq!(
                p.check(ReadCalls, &tenant),
                Err(Denied::NotFound),
                "{:?}",
                p.role
            );
            assert_eq!(
                p.check(Ingest, &tenant),
                Err(Denied::NotFound),
                "{:?}",
                p.role
            );
        }
    }

    #[test]
    fn roles_accept_only_the_scopes_that_fit_them() {
        let agency = AgencyId::generate();
        let account = Scope::Account {
            agency,
            account: AccountId::generate(),
        };
        let cases = [
            (Role::Admin, Scope::Installation, true),
            (Role::Admin, Scope::Agency(agency), false),
            (Role::AgencyAdmin, Scope::Agency(agency), true),
            (Role::AgencyAdmin, account, false),
            (Role::AccountAdmin, account, true),
            (Role::AccountAdmin, Scope::Agency(agency), false),
            (Role::Analyst, Scope::Agency(agency), true),
            (Role::Analyst, Scope::Installation, false),
            (Role::Ingest, account, true),
        ];
        for (role, scope, ok) in cases {
            assert_eq!(
                Principal::validate_scope(role, &scope).is_ok(),
                ok,
                "{role} {scope:?}"
            );
        }
    }

    #[test]
    fn tokens_and_users_are_managed_only_within_scope_and_never_raised_above_the_manager() {
        let (agency, other_agency) = (AgencyId::generate(), AgencyId::generate());
        let (account, sibling) = (AccountId::generate(), AccountId::generate());
        let in_account = Scope::Account { agency, account };
        let in_sibling = Scope::Account {
            agency,
            account: sibling,
        };
        let admin = principal(Role::Admin, Scope::Installation);
        let agency_admin = principal(Role::AgencyAdmin, Scope::Agency(agency));
        let account_admin = principal(Role::AccountAdmin, in_account);
        let analyst = principal(Role::Analyst, in_account);
        let cases = [
            (&admin, Scope::Installation, Role::Admin, Ok(())),
            (
                &agency_admin,
                Scope::Agency(agency),
                Role::AgencyAdmin,
                Ok(()),
            ),
            (&agency_admin, in_sibling, Role::AccountAdmin, Ok(())),
            (
                &agency_admin,
                Scope::Installation,
                Role::Admin,
                Err(Denied::NotFound),
            ),
            (
                &agency_admin,
                Scope::Agency(other_agency),
                Role::Analyst,
                Err(Denied::NotFound),
            ),
            (&account_admin, in_account, Role::AccountAdmin, Ok(())),
            (&account_admin, in_account, Role::Analyst, Ok(())),
            (
                &account_admin,
                in_account,
                Role::AgencyAdmin,
                Err(Denied::Forbidden),
            ),
            (
                &account_admin,
                in_account,
                Role::Admin,
                Err(Denied::Forbidden),
            ),
            (
                &account_admin,
                in_sibling,
                Role::Analyst,
                Err(Denied::NotFound),
            ),
            (
                &account_admin,
                Scope::Agency(agency),
                Role::Analyst,
                Err(Denied::NotFound),
            ),
            (&analyst, in_account, Role::Analyst, Err(Denied::Forbidden)),
        ];
        for (p, target, role, expected) in cases {
            assert_eq!(
                p.may_grant(role, &target),
                expected,
                "{} {role} {target:?}",
                p.role
            );
        }
    }
}
