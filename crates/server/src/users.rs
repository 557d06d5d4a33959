//! Accounts: the users file, password verification, anonymous access.
//!
//! The users file is TOML, one `[[user]]` table per account:
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password-hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # or a bcrypt $2b$ hash
//! home = "alice"          # below the server root; defaults to the name
//! read-only = false       # default false
//! ```
//!
//! Only argon2 (PHC string) and bcrypt hashes are accepted; a plaintext
//! password is refused when the file is read. `kubeftp-server hash-password`
//! prints a hash.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Deserialize;

/// A logged-in identity: where it lives and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: String,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users file is not valid TOML: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error(
        "user {0:?}: password-hash must be an argon2 ($argon2id$...) or bcrypt ($2b$...) hash, not a plaintext password"
    )]
    NotAHash(String),
    #[error("user {0:?} appears more than once")]
    Duplicate(String),
    #[error("user {0:?}: the names anonymous and ftp are reserved for anonymous access")]
    Reserved(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct UserEntry {
    name: String,
    password_hash: String,
    home: Option<String>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Argon2(String),
    Bcrypt(String),
}

/// The parsed users file.
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    users: HashMap<String, (Hash, Account)>,
}

impl UserDb {
    pub fn parse(text: &str) -> Result<UserDb, UsersError> {
        let file: UsersFile = toml::from_str(text)?;
        let mut users = HashMap::new();
        for u in file.user {
            if is_anonymous_name(&u.name) {
                return Err(UsersError::Reserved(u.name));
            }
            let hash = if u.password_hash.starts_with("$argon2")
                && PasswordHash::new(&u.password_hash).is_ok()
            {
                Hash::Argon2(u.password_hash)
            } else if is_bcrypt(&u.password_hash) {
                Hash::Bcrypt(u.password_hash)
            } else {
                return Err(UsersError::NotAHash(u.name));
            };
            let account = Account {
                home: u.home.unwrap_or_else(|| u.name.clone()),
                name: u.name.clone(),
                read_only: u.read_only,
            };
            if users.insert(u.name.clone(), (hash, account)).is_some() {
                return Err(UsersError::Duplicate(u.name));
            }
        }
        Ok(UserDb { users })
    }

    /// A database holding one account, for a quick local run with no users
    /// file.
    pub fn single(account: Account, password: &str) -> UserDb {
        let hash = Hash::Argon2(hash_password(password));
        UserDb {
            users: HashMap::from([(account.name.clone(), (hash, account))]),
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password. Slow on purpose (the hash's cost); call it from a
    /// blocking thread. Unknown users cost the same as known ones.
    pub fn verify(&self, name: &str, password: &str) -> Option<Account> {
        match self.users.get(name) {
            Some((hash, account)) => check(hash, password).then(|| account.clone()),
            None => {
                check(self.stand_in(name), password);
                None
            }
        }
    }

    /// Whether `name` has the same password hash and account here as in
    /// `earlier`: a session logged in under `earlier` may go on only if
    /// nothing about its account changed since.
    pub fn unchanged_since(&self, earlier: &UserDb, name: &str) -> bool {
        match (self.users.get(name), earlier.users.get(name)) {
            (Some(now), Some(then)) => now == then,
            _ => false,
        }
    }

    /// What an unknown `name` is checked against: the hash of an account
    /// picked by the name, the same one every time. Hashes differ in cost
    /// (bcrypt's cost, argon2's parameters), so one fixed dummy would take
    /// a time of its own and tell unknown names from some known ones; this
    /// way an unknown name takes the time some account takes. The result
    /// is ignored, even if the password happens to be that account's.
    fn stand_in(&self, name: &str) -> &Hash {
        let mut hashes: Vec<(&String, &Hash)> =
            self.users.iter().map(|(n, (hash, _))| (n, hash)).collect();
        if hashes.is_empty() {
            return &DUMMY;
        }
        hashes.sort_unstable_by_key(|(n, _)| *n);
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(name, &mut hasher);
        let pick = std::hash::Hasher::finish(&hasher) as usize % hashes.len();
        hashes[pick].1
    }
}

/// Checked against when there is no account at all.
static DUMMY: LazyLock<Hash> = LazyLock::new(|| Hash::Argon2(hash_password("kubeftp-dummy")));

fn check(hash: &Hash, password: &str) -> bool {
    match hash {
        Hash::Argon2(phc) => PasswordHash::new(phc)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false),
        Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
    }
}

fn is_bcrypt(s: &str) -> bool {
    s.len() == 60 && ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p))
}

/// An argon2id hash (the argon2 crate's recommended parameters) for the
/// users file.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid parameters")
        .to_string()
}

pub fn is_anonymous_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

/// The users file as the server sees it right now (swapped on reload).
pub type SharedUsers = tokio::sync::watch::Receiver<Arc<UserDb>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown names are checked against a hash of the file's own kinds,
    /// the same one for a name each time: a bcrypt-only file never has
    /// them take argon2's time.
    #[test]
    fn unknown_names_cost_what_some_account_costs() {
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        let db = UserDb::parse(&format!(
            "[[user]]\nname = \"b\"\npassword-hash = \"{bcrypt}\"\n"
        ))
        .unwrap();
        for name in ["nobody", "root", "x"] {
            assert!(matches!(db.stand_in(name), Hash::Bcrypt(h) if *h == bcrypt));
            assert!(db.verify(name, "pw").is_none(), "never a login");
        }
        let argon = hash_password("pw");
        let both = UserDb::parse(&format!(
            "[[user]]\nname = \"b\"\npassword-hash = \"{bcrypt}\"\n\
             [[user]]\nname = \"a\"\npassword-hash = \"{argon}\"\n"
        ))
        .unwrap();
        let kinds: Vec<bool> = (0..40)
            .map(|i| matches!(both.stand_in(&format!("user{i}")), Hash::Bcrypt(_)))
            .collect();
        assert!(kinds.contains(&true) && kinds.contains(&false), "{kinds:?}");
        let again: Vec<bool> = (0..40)
            .map(|i| matches!(both.stand_in(&format!("user{i}")), Hash::Bcrypt(_)))
            .collect();
        assert_eq!(kinds, again, "the same stand-in for a name each time");
        assert!(matches!(UserDb::default().stand_in("x"), Hash::Argon2(_)));
    }

    #[test]
    fn argon2_and_bcrypt_verify() {
        let argon = hash_password("s3cret");
        let bcrypt = bcrypt::hash("hunter2", 4).unwrap();
        let db = UserDb::parse(&format!(
            "[[user]]\nname = \"alice\"\npassword-hash = \"{argon}\"\n\
             [[user]]\nname = \"bob\"\npassword-hash = \"{bcrypt}\"\nhome = \"shared/bob\"\nread-only = true\n"
        ))
        .unwrap();
        assert_eq!(db.verify("alice", "s3cret").unwrap().home, "alice");
        assert!(db.verify("alice", "wrong").is_none());
        let bob = db.verify("bob", "hunter2").unwrap();
        assert!(bob.read_only);
        assert_eq!(bob.home, "shared/bob");
        assert!(db.verify("nobody", "s3cret").is_none());
    }

    #[test]
    fn plaintext_and_mistakes_are_refused() {
        let err =
            UserDb::parse("[[user]]\nname = \"a\"\npassword-hash = \"letmein\"\n").unwrap_err();
        assert!(
            err.to_string().contains("not a plaintext password"),
            "{err}"
        );
        let h = hash_password("x");
        let twice = format!(
            "[[user]]\nname='a'\npassword-hash='{h}'\n[[user]]\nname='a'\npassword-hash='{h}'\n"
        );
        assert!(matches!(
            UserDb::parse(&twice),
            Err(UsersError::Duplicate(_))
        ));
        let anon = format!("[[user]]\nname='ftp'\npassword-hash='{h}'\n");
        assert!(matches!(UserDb::parse(&anon), Err(UsersError::Reserved(_))));
        assert!(matches!(
            UserDb::parse("[[user]]\nname='a'\npasswd='x'\n"),
            Err(UsersError::Syntax(_))
        ));
    }
}
