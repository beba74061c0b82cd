//! The call log's side of recipients: their signing secrets, sealed with the account's
//! secrets key so the database alone never yields them.

use zeroize::Zeroizing;

use ringfence_core::{AccountId, RecipientId};
use ringfence_crypto::{open, seal};

use crate::calllog::{CallLog, LogError, aad};
use crate::records::RecipientRow;

impl CallLog {
    /// Seals a recipient's signing secret (to store in its row).
    pub async fn seal_recipient_secret(
        &self,
        account: AccountId,
        recipient: RecipientId,
        secret: &[u8],
    ) -> Result<Vec<u8>, LogError> {
        let key = self.secrets_key(account).await?;
        Ok(seal(
            &key,
            &aad("recipient", &recipient.to_string(), "secret"),
            secret,
        ))
    }

    /// A recipient's signing secret, opened.
    pub async fn recipient_secret(
        &self,
        recipient: &RecipientRow,
    ) -> Result<Zeroizing<Vec<u8>>, LogError> {
        let key = self.secrets_key(recipient.account_id).await?;
        open(
            &key,
            &aad("recipient", &recipient.id.to_string(), "secret"),
            &recipient.secret,
        )
        .map_err(|_| {
            LogError::Corrupt(
                format!("recipient {}", recipient.id),
                "secret does not open",
            )
        })
    }
}
