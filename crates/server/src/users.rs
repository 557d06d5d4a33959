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

use std::collections::BTreeMap;
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
    #[error("user {0:?}: {1}")]
    BadHash(String, String),
    #[error(
        "user {0:?}: home {1:?} must be a relative path below root, without `.` or `..` (the name is the default home)"
    )]
    BadHome(String, String),
}

/// The most memory an argon2 hash in the users file may ask for, in KiB
/// (the default is 19 MiB). A login verifies one hash; a few run at once.
const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes an argon2 hash may ask for (the default is 2).
const MAX_ARGON2_PASSES: u32 = 16;
/// The most lanes an argon2 hash may ask for (the default is 1).
const MAX_ARGON2_LANES: u32 = 16;
/// bcrypt's cost range: below 4 the crate refuses to verify, and each step
/// doubles the time (cost 12 takes about 0.25 s here, 15 about 2 s).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=15;

/// The hash of `user`'s entry, if it is one the server can verify, at a
/// cost a login can pay: a hash from the file can otherwise make every
/// login take minutes or all the memory, and unknown names are checked
/// against the file's own hashes.
fn parse_hash(user: &str, text: String) -> Result<Hash, UsersError> {
    let bad = |why: String| Err(UsersError::BadHash(user.to_owned(), why));
    if text.starts_with("$argon2") {
        let Ok(phc) = PasswordHash::new(&text) else {
            return Err(UsersError::NotAHash(user.to_owned()));
        };
        if argon2::Algorithm::try_from(phc.algorithm).is_err() {
            return bad(format!("{} is not an argon2 variant", phc.algorithm));
        }
        let params = match argon2::Params::try_from(&phc) {
            Ok(params) => params,
            Err(e) => return bad(format!("invalid argon2 parameters: {e}")),
        };
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB
            || params.t_cost() > MAX_ARGON2_PASSES
            || params.p_cost() > MAX_ARGON2_LANES
        {
            return bad(format!(
                "argon2 parameters beyond m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES}; \
                 hash the password again (kubeftp-server hash-password)"
            ));
        }
        return Ok(Hash::Argon2(text));
    }
    if is_bcrypt(&text) {
        let cost = text[4..6].parse::<u32>().unwrap_or(0);
        if !BCRYPT_COSTS.contains(&cost) {
            return bad(format!(
                "bcrypt cost {} is outside {}-{}",
                &text[4..6],
                BCRYPT_COSTS.start(),
                BCRYPT_COSTS.end()
            ));
        }
        return Ok(Hash::Bcrypt(text));
    }
    Err(UsersError::NotAHash(user.to_owned()))
}

/// Whether `home` names a directory below the root: relative, and made of
/// plain names only.
fn home_ok(home: &str) -> bool {
    let path = std::path::Path::new(home);
    !home.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && !home.split('/').any(|part| part == "." || part == "..")
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
    /// By name, in order: an unknown name picks its stand-in by position.
    users: BTreeMap<String, (Hash, Account)>,
}

impl UserDb {
    pub fn parse(text: &str) -> Result<UserDb, UsersError> {
        let file: UsersFile = toml::from_str(text)?;
        let mut users = BTreeMap::new();
        for u in file.user {
            if is_anonymous_name(&u.name) {
                return Err(UsersError::Reserved(u.name));
            }
            let hash = parse_hash(&u.name, u.password_hash)?;
            let home = u.home.unwrap_or_else(|| u.name.clone());
            if !home_ok(&home) {
                return Err(UsersError::BadHome(u.name, home));
            }
            let account = Account {
                home,
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
            users: BTreeMap::from([(account.name.clone(), (hash, account))]),
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
        if self.users.is_empty() {
            return &DUMMY;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(name, &mut hasher);
        let pick = std::hash::Hasher::finish(&hasher) as usize % self.users.len();
        let (_, (hash, _)) = self.users.iter().nth(pick).expect("pick < len");
        hash
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

    /// Hashes that could never match, or would cost a login minutes or all
    /// the memory, are refused with the reason.
    #[test]
    fn hashes_beyond_what_a_login_can_pay_are_refused() {
        let entry = |hash: &str| format!("[[user]]\nname='a'\npassword-hash='{hash}'\n");
        let salt_and_hash = "c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for (hash, why) in [
            (
                format!("$argon2id$v=19$m=4194304,t=2,p=1${salt_and_hash}"),
                "beyond",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=1000,p=1${salt_and_hash}"),
                "beyond",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=0,p=1${salt_and_hash}"),
                "invalid argon2",
            ),
            (
                format!("$argon2ix$v=19$m=19456,t=2,p=1${salt_and_hash}"),
                "not an argon2",
            ),
            (
                bcrypt::hash("pw", 4).unwrap().replacen("$04$", "$03$", 1),
                "outside 4-15",
            ),
            (
                bcrypt::hash("pw", 4).unwrap().replacen("$04$", "$31$", 1),
                "outside 4-15",
            ),
        ] {
            let err = UserDb::parse(&entry(&hash)).unwrap_err();
            assert!(matches!(err, UsersError::BadHash(..)), "{hash}: {err}");
            assert!(err.to_string().contains(why), "{hash}: {err}");
        }
        let fine = format!("$argon2id$v=19$m=65536,t=3,p=4${salt_and_hash}");
        assert!(UserDb::parse(&entry(&fine)).is_ok());
    }

    /// Homes are directories below the root: `..`, `.`, empty or absolute
    /// homes (given, or a name taken as the home) are refused.
    #[test]
    fn homes_stay_below_the_root() {
        let h = hash_password("x");
        for (name, home) in [
            ("a", Some("..")),
            ("a", Some("")),
            ("a", Some("/srv")),
            ("a", Some("x/../..")),
            ("a", Some("./x")),
            ("slash/../bob", None),
        ] {
            let home_line = home.map(|h| format!("home = '{h}'\n")).unwrap_or_default();
            let text = format!("[[user]]\nname='{name}'\npassword-hash='{h}'\n{home_line}");
            let err = UserDb::parse(&text).unwrap_err();
            assert!(
                matches!(err, UsersError::BadHome(..)),
                "{name} {home:?}: {err}"
            );
        }
        let nested = format!("[[user]]\nname='a'\npassword-hash='{h}'\nhome='team/a'\n");
        assert!(UserDb::parse(&nested).is_ok());
    }
}
