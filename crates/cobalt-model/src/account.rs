//! Accounts and their keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The storage emulator's well-known development account name.
pub const DEV_STORAGE_ACCOUNT: &str = "devstoreaccount1";
/// Cobalt's development Batch account name.
pub const DEV_BATCH_ACCOUNT: &str = "devbatchaccount1";
/// The published development key of `devstoreaccount1` (also used for `devbatchaccount1`).
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Why an account key or account list could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountKeyError {
    /// The key is not valid base64.
    #[error("account key of {0:?} is not valid base64")]
    NotBase64(String),
    /// An entry of an account list is not `name:key`.
    #[error("account entry {0:?} is not of the form name:key[:key2]")]
    BadEntry(String),
    /// The account name breaks Azure's rules (3-24 lowercase letters and digits).
    #[error("account name {0:?} must be 3-24 lowercase letters or digits")]
    BadName(String),
}

/// A decoded account key. Never printed, compared in constant time, wiped on drop.
#[derive(Clone)]
pub struct AccountKey(Zeroizing<Vec<u8>>);

impl AccountKey {
    /// Decodes a base64 key as Azure shows it.
    pub fn from_base64(account: &str, key: &str) -> Result<Self, AccountKeyError> {
        STANDARD
            .decode(key.trim())
            .map(|k| Self(Zeroizing::new(k)))
            .map_err(|_| AccountKeyError::NotBase64(account.to_owned()))
    }

    /// HMAC-SHA256 of `message` under this key, base64-encoded: Azure's signature format.
    pub fn sign(&self, message: &str) -> String {
        STANDARD.encode(self.mac(message))
    }

    /// Whether `signature` (base64) is this key's signature of `message`, compared in
    /// constant time.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        let Ok(given) = STANDARD.decode(signature) else {
            return false;
        };
        self.mac(message).as_slice().ct_eq(&given).into()
    }

    fn mac(&self, message: &str) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(<redacted>)")
    }
}

/// An account: a name and one or two keys (Azure's key1/key2).
#[derive(Clone, Debug)]
pub struct Account {
    /// The account name, e.g. `devstoreaccount1`.
    pub name: String,
    /// key1, then key2 if configured. A signature made with any of them is accepted.
    pub keys: Vec<AccountKey>,
}

impl Account {
    /// Whether `signature` signs `message` with one of this account's keys.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        // Evaluate every key so timing does not reveal which one matched.
        self.keys
            .iter()
            .fold(false, |ok, key| key.verify(message, signature) | ok)
    }
}

/// The set of accounts a service knows.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    accounts: Vec<Account>,
}

impl Accounts {
    /// The development storage account only.
    pub fn dev_storage() -> Self {
        Self::with_dev(DEV_STORAGE_ACCOUNT)
    }

    /// The development batch account only.
    pub fn dev_batch() -> Self {
        Self::with_dev(DEV_BATCH_ACCOUNT)
    }

    fn with_dev(name: &str) -> Self {
        let key = AccountKey::from_base64(name, DEV_ACCOUNT_KEY)
            .unwrap_or_else(|_| unreachable!("the development key is valid base64"));
        Self {
            accounts: vec![Account {
                name: name.to_owned(),
                keys: vec![key],
            }],
        }
    }

    /// Adds accounts from Azurite's `AZURITE_ACCOUNTS` format: `name1:key1[:key2];name2:key1`.
    /// A later entry with the name of an existing account replaces it.
    pub fn extend_from_spec(&mut self, spec: &str) -> Result<(), AccountKeyError> {
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.split(':');
            let name = parts.next().unwrap_or_default().trim();
            let keys: Vec<&str> = parts.collect();
            if keys.is_empty() || keys.len() > 2 {
                return Err(AccountKeyError::BadEntry(name.to_owned()));
            }
            if !(3..=24).contains(&name.len())
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(AccountKeyError::BadName(name.to_owned()));
            }
            let keys = keys
                .iter()
                .map(|k| AccountKey::from_base64(name, k))
                .collect::<Result<Vec<_>, _>>()?;
            self.accounts.retain(|a| a.name != name);
            self.accounts.push(Account {
                name: name.to_owned(),
                keys,
            });
        }
        Ok(())
    }

    /// The names of the accounts.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| a.name.as_str())
    }

    /// The account with this exact name.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_key_signs_and_verifies() {
        let accounts = Accounts::dev_storage();
        let account = accounts.get(DEV_STORAGE_ACCOUNT).unwrap();
        let sig = account.keys[0].sign("hello");
        assert!(account.verify("hello", &sig));
        assert!(!account.verify("hello!", &sig));
        assert!(!account.verify("hello", "not base64 !"));
    }

    #[test]
    fn spec_parsing() {
        let mut accounts = Accounts::dev_storage();
        accounts
            .extend_from_spec("acct2:a2V5MQ==:a2V5Mg==; acct3:a2V5Mw==")
            .unwrap();
        assert_eq!(accounts.get("acct2").unwrap().keys.len(), 2);
        assert!(accounts.get("acct3").is_some());
        assert_eq!(
            accounts.extend_from_spec("Bad:a2V5"),
            Err(AccountKeyError::BadName("Bad".into()))
        );
        assert_eq!(
            accounts.extend_from_spec("nokey"),
            Err(AccountKeyError::BadEntry("nokey".into()))
        );
        assert!(matches!(
            accounts.extend_from_spec("acct4:%%%"),
            Err(AccountKeyError::NotBase64(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = AccountKey::from_base64("a", DEV_ACCOUNT_KEY).unwrap();
        assert_eq!(format!("{key:?}"), "AccountKey(<redacted>)");
    }
}
