//! SMTP AUTH (RFC 4954; seed 3.10 item 1; ZMailer auth-failrate): the
//! password file, the SASL mechanisms PLAIN (RFC 4616), LOGIN, CRAM-MD5
//! (RFC 2195) and SCRAM-SHA-256 (RFC 5802, RFC 7677, without channel
//! binding), which mechanisms are offered, and the failure rate limit.
//!
//! # The password file
//!
//! One `user:hash` per line; empty lines and lines starting with `#` are
//! skipped; the user name is everything before the first `:`, the hash
//! everything after it (trailing CR and blanks removed). At most
//! [`MAX_USERS`] entries, lines of at most [`MAX_LINE`] octets, a file of at
//! most [`MAX_FILE`] octets; a malformed line is an error naming its line
//! number (the file is the operator's, a silent skip would hide a typo).
//! The hash forms:
//!
//! | form | example | usable by |
//! | --- | --- | --- |
//! | argon2id (PHC string) | `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH` | PLAIN, LOGIN |
//! | sha512-crypt | `$6$rounds=5000$SALT$HASH` | PLAIN, LOGIN |
//! | yescrypt (checked by the system's crypt(3), [`crate::crypt`]) | `$y$j9T$SALT$HASH` | PLAIN, LOGIN |
//! | SCRAM-SHA-256 keys (RFC 5803) | `SCRAM-SHA-256$4096:SALT$STOREDKEY:SERVERKEY` (base64) | PLAIN, LOGIN, SCRAM-SHA-256 |
//! | clear text | `{PLAIN}secret` | all four |
//!
//! CRAM-MD5 needs the password itself, so it works only for `{PLAIN}`
//! entries; SCRAM-SHA-256 works with `{PLAIN}` or with stored SCRAM keys,
//! which is the form to use when SCRAM is wanted without clear-text
//! passwords. A user whose entry cannot serve a mechanism fails it like a
//! wrong password. The file is read once, when the server starts.
//!
//! Instead of a password file, `dovecot_socket` names Dovecot's auth
//! socket ([`crate::dovecot`]): Dovecot then runs the mechanisms (and
//! must offer those configured here) against its own user database.
//!
//! # Which mechanisms are offered
//!
//! The `mechanisms` option, in its order, minus DIGEST-MD5 (not
//! implemented), minus what the flags exclude: `noplaintext` removes
//! PLAIN and LOGIN; `noactive` removes PLAIN, LOGIN and CRAM-MD5;
//! `nodictionary` removes PLAIN, LOGIN and CRAM-MD5; `mutual_auth` keeps
//! only SCRAM-SHA-256; `forward_secrecy` and `pass_credentials` remove
//! all four (none has those properties). AUTH is offered only under TLS
//! unless the `allow_without_tls` flag is set. A successful login allows
//! relaying when its mechanism is in `trusted_mechanisms`, or when that
//! list is empty.
//!
//! # Failure rate
//!
//! Failed logins are counted per client address (IPv6 per /64) in windows
//! of an hour that start with the first failure. When a window holds
//! `fail_rate` failures, AUTH is answered `454 4.7.0` until the window
//! ends. The table holds at most [`MAX_FAIL_ENTRIES`] addresses; when
//! full, expired windows are dropped first, then the oldest window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use smx_conf::model::smtps::AuthConfig;

/// Most entries of a password file.
pub const MAX_USERS: usize = 1_000_000;
/// Longest line of a password file.
pub const MAX_LINE: usize = 4096;
/// Largest password file.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Most addresses in the failure table.
pub const MAX_FAIL_ENTRIES: usize = 65_536;
/// Length of a failure window.
pub const FAIL_WINDOW: Duration = Duration::from_secs(3600);
/// SCRAM iterations used for `{PLAIN}` entries and unknown users.
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Most SCRAM iterations accepted from the password file.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;
/// Longest user name or password taken from a client.
pub const MAX_CREDENTIAL: usize = 1024;

/// A SASL mechanism smx implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The LOGIN mechanism (draft-murchison-sasl-login).
    Login,
    /// RFC 2195.
    CramMd5,
    /// RFC 7677.
    ScramSha256,
}

impl Mechanism {
    /// The mechanism of an AUTH argument (upper case).
    pub fn from_name(s: &str) -> Option<Mechanism> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "CRAM-MD5" => Some(Mechanism::CramMd5),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            _ => None,
        }
    }

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the AUTH configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A line of the password file is malformed.
    #[error("{path} line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Neither a password file nor a Dovecot socket.
    #[error("auth needs password_file or dovecot_socket")]
    NoBackend,
}

/// One user's stored credential.
#[derive(Clone)]
pub enum Credential {
    /// `{PLAIN}`.
    Plain(String),
    /// An argon2 PHC string.
    Argon2(String),
    /// A `$6$` sha512-crypt string.
    Sha512Crypt(String),
    /// A `$y$` yescrypt string.
    Yescrypt(String),
    /// RFC 5803 SCRAM-SHA-256 keys.
    Scram(ScramKeys),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Plain(_) => "Plain(..)",
            Credential::Argon2(_) => "Argon2(..)",
            Credential::Sha512Crypt(_) => "Sha512Crypt(..)",
            Credential::Yescrypt(_) => "Yescrypt(..)",
            Credential::Scram(_) => "Scram(..)",
        })
    }
}

/// SCRAM-SHA-256 server-side keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramKeys {
    /// The keys for a password.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations);
        let client_key = hmac256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac256(&salted, b"Server Key");
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// The RFC 5803 form used in the password file.
    pub fn to_file_form(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Comparison in time independent of where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_scram(s: &str) -> Result<ScramKeys, String> {
    let bad = || "malformed SCRAM-SHA-256 entry".to_string();
    let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
    let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
    let (iter, salt) = params.split_once(':').ok_or_else(bad)?;
    let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
    let iterations: u32 = iter.parse().map_err(|_| bad())?;
    if !(1..=MAX_SCRAM_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "SCRAM iterations must be 1 to {MAX_SCRAM_ITERATIONS}"
        ));
    }
    let salt = B64.decode(salt).map_err(|_| bad())?;
    let stored: [u8; 32] = B64
        .decode(stored)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(bad)?;
    let server: [u8; 32] = B64
        .decode(server)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(bad)?;
    Ok(ScramKeys {
        iterations,
        salt,
        stored_key: stored,
        server_key: server,
    })
}

/// One hash string of the password file.
pub fn parse_credential(hash: &str) -> Result<Credential, String> {
    if let Some(p) = hash.strip_prefix("{PLAIN}") {
        Ok(Credential::Plain(p.to_string()))
    } else if hash.starts_with("$argon2") {
        argon2::PasswordHash::new(hash).map_err(|e| format!("argon2 hash: {e}"))?;
        Ok(Credential::Argon2(hash.to_string()))
    } else if hash.starts_with("$6$") {
        Ok(Credential::Sha512Crypt(hash.to_string()))
    } else if hash.starts_with("SCRAM-SHA-256$") {
        Ok(Credential::Scram(parse_scram(hash)?))
    } else if hash.starts_with("$y$") {
        crate::crypt::check_yescrypt(hash)?;
        Ok(Credential::Yescrypt(hash.to_string()))
    } else {
        Err("unknown hash form (argon2id, $6$, $y$, SCRAM-SHA-256$ or {PLAIN})".into())
    }
}

/// The users and their credentials.
#[derive(Clone, Default)]
pub struct PasswordDb {
    users: HashMap<String, Credential>,
}

impl std::fmt::Debug for PasswordDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordDb")
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswordDb {
    /// Parses the text of a password file; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<PasswordDb, AuthError> {
        let mut users = HashMap::new();
        for (i, raw) in text.split('\n').enumerate() {
            let err = |reason: String| AuthError::Line {
                path: path.to_string(),
                line: i + 1,
                reason,
            };
            if raw.len() > MAX_LINE {
                return Err(err(format!("line longer than {MAX_LINE} octets")));
            }
            let line = raw.trim_end_matches(['\r', ' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected user:hash".into()))?;
            if user.is_empty() || user.chars().any(char::is_control) {
                return Err(err("empty or invalid user name".into()));
            }
            let cred = parse_credential(hash).map_err(err)?;
            if users.len() >= MAX_USERS {
                return Err(err(format!("more than {MAX_USERS} users")));
            }
            users.insert(user.to_string(), cred);
        }
        Ok(PasswordDb { users })
    }

    /// Reads a password file.
    pub fn load(path: &Path) -> Result<PasswordDb, AuthError> {
        let name = path.display().to_string();
        let ferr = |reason: String| AuthError::File {
            path: name.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| ferr(e.to_string()))?;
        if meta.len() > MAX_FILE {
            return Err(ferr(format!("larger than {MAX_FILE} octets")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| ferr(e.to_string()))?;
        PasswordDb::parse(&text, &name)
    }

    /// A user's credential.
    pub fn get(&self, user: &str) -> Option<&Credential> {
        self.users.get(user)
    }

    /// Checks a password (PLAIN, LOGIN). Slow by design for argon2 and
    /// sha512-crypt: call it off the async threads.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Credential::Plain(p)) => ct_eq(p.as_bytes(), password.as_bytes()),
            Some(Credential::Argon2(h)) => {
                use argon2::PasswordVerifier as _;
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            }
            Some(Credential::Sha512Crypt(h)) => sha_crypt::sha512_check(password, h).is_ok(),
            Some(Credential::Yescrypt(h)) => crate::crypt::verify_yescrypt(password, h),
            Some(Credential::Scram(k)) => {
                let d = ScramKeys::derive(password.as_bytes(), &k.salt, k.iterations);
                ct_eq(&d.stored_key, &k.stored_key)
            }
            None => false,
        }
    }
}

/// Failed logins per address; see the module doc.
#[derive(Debug)]
pub struct FailTable {
    limit: u32,
    inner: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The key of an address: IPv6 addresses by their /64.
fn fail_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl FailTable {
    /// A table allowing `limit` failures per hour (0: no limit).
    pub fn new(limit: u32) -> FailTable {
        FailTable {
            limit,
            inner: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        // Entries are updated in single statements: a panic elsewhere
        // cannot leave one half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let t = self.lock();
        t.get(&fail_key(ip)).is_some_and(|&(start, n)| {
            now.saturating_duration_since(start) < FAIL_WINDOW && n >= self.limit
        })
    }

    /// Counts a failure of `ip`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let key = fail_key(ip);
        let mut t = self.lock();
        if !t.contains_key(&key) && t.len() >= MAX_FAIL_ENTRIES {
            t.retain(|_, (start, _)| now.saturating_duration_since(*start) < FAIL_WINDOW);
            if t.len() >= MAX_FAIL_ENTRIES {
                let oldest = t.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    t.remove(&k);
                }
            }
        }
        let e = t.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= FAIL_WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

/// The AUTH configuration in use.
#[derive(Debug)]
pub struct AuthServer {
    /// The users (empty with a Dovecot socket).
    pub db: PasswordDb,
    /// Dovecot's auth socket, used instead of `db`.
    pub dovecot: Option<std::path::PathBuf>,
    /// Mechanisms offered, in order.
    pub mechanisms: Vec<Mechanism>,
    /// Mechanisms that allow relaying (empty: all).
    pub trusted: Vec<Mechanism>,
    /// Offer AUTH without TLS.
    pub without_tls: bool,
    /// MAIL needs AUTH first (submission).
    pub required: bool,
    /// Failed logins.
    pub fails: FailTable,
    /// Secret for the fake SCRAM salts of unknown users.
    secret: [u8; 32],
}

impl AuthServer {
    /// Loads the `auth` section; see the module doc.
    pub fn load(c: &AuthConfig) -> Result<AuthServer, AuthError> {
        match (&c.password_file, &c.dovecot_socket) {
            (Some(path), _) => Ok(AuthServer::new(PasswordDb::load(path)?, c)),
            (None, Some(sock)) => {
                let mut a = AuthServer::new(PasswordDb::default(), c);
                a.dovecot = Some(sock.clone());
                Ok(a)
            }
            (None, None) => Err(AuthError::NoBackend),
        }
    }

    /// An AUTH server over `db` with the options of `c`.
    pub fn new(db: PasswordDb, c: &AuthConfig) -> AuthServer {
        let f = &c.flags;
        let allowed = |m: Mechanism| {
            let clear = matches!(m, Mechanism::Plain | Mechanism::Login);
            let weak = clear || m == Mechanism::CramMd5;
            !(f.noplaintext && clear
                || (f.noactive || f.nodictionary) && weak
                || f.mutual_auth && m != Mechanism::ScramSha256
                || f.forward_secrecy
                || f.pass_credentials)
        };
        let mut mechanisms = Vec::new();
        for m in c
            .mechanisms
            .0
            .iter()
            .filter_map(|n| Mechanism::from_name(n))
        {
            if allowed(m) && !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        let trusted = c
            .trusted_mechanisms
            .0
            .iter()
            .filter_map(|n| Mechanism::from_name(n))
            .collect();
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        AuthServer {
            db,
            dovecot: None,
            mechanisms,
            trusted,
            without_tls: f.allow_plaintext_without_tls,
            required: f.require,
            fails: FailTable::new(c.fail_rate),
            secret,
        }
    }

    /// Whether a login with `m` allows relaying.
    pub fn trusts(&self, m: Mechanism) -> bool {
        self.trusted.is_empty() || self.trusted.contains(&m)
    }

    /// The SCRAM keys for `user`: stored, derived from a clear-text
    /// entry, or (unknown user, or an entry SCRAM cannot use) fake ones
    /// with a stable salt, so that the exchange does not tell which users
    /// exist.
    fn scram_keys(&self, user: &str) -> (ScramKeys, bool) {
        match self.db.get(user) {
            Some(Credential::Scram(k)) => (k.clone(), true),
            Some(Credential::Plain(p)) => {
                let salt = hmac256(&self.secret, user.as_bytes());
                (
                    ScramKeys::derive(p.as_bytes(), &salt[..16], SCRAM_ITERATIONS),
                    true,
                )
            }
            _ => {
                let salt = hmac256(&self.secret, user.as_bytes());
                (
                    ScramKeys {
                        iterations: SCRAM_ITERATIONS,
                        salt: salt[..16].to_vec(),
                        stored_key: [0; 32],
                        server_key: [0; 32],
                    },
                    false,
                )
            }
        }
    }
}

/// What the SASL exchange wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw; base64 on the wire) and read a response.
    Challenge(Vec<u8>),
    /// Check this password (slow: off the async threads), then it is done.
    Verify {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// Logged in as this user.
    Success(String),
    /// Failed; the text is for the log.
    Fail(&'static str),
    /// The password store is unavailable (454, not counted as a failure).
    TempFail(&'static str),
    /// The client's response is malformed (501).
    Malformed(&'static str),
}

#[derive(Debug)]
enum State {
    Start,
    LoginUser,
    LoginPassword(String),
    Cram(String),
    ScramFinal {
        user: String,
        keys: ScramKeys,
        known: bool,
        client_first_bare: String,
        server_first: String,
        gs2: String,
        nonce: String,
    },
    ScramDone(String),
    Done,
}

/// One SASL exchange.
#[derive(Debug)]
pub struct Exchange {
    mech: Mechanism,
    state: State,
    auth: Arc<AuthServer>,
    hostname: String,
}

fn utf8(b: &[u8]) -> Option<String> {
    if b.len() > MAX_CREDENTIAL {
        return None;
    }
    String::from_utf8(b.to_vec()).ok()
}

fn nonce() -> String {
    let mut b = [0u8; 18];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    B64.encode(b)
}

/// A SCRAM `saslname` decoded (`=2C` is `,`, `=3D` is `=`).
fn sasl_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl Exchange {
    /// Starts `mech`; `hostname` goes into CRAM-MD5 challenges.
    pub fn new(mech: Mechanism, auth: Arc<AuthServer>, hostname: &str) -> Exchange {
        Exchange {
            mech,
            state: State::Start,
            auth,
            hostname: hostname.to_string(),
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The first step, with the decoded initial response if the client
    /// sent one (`=` is an empty one).
    pub fn start(&mut self, initial: Option<Vec<u8>>) -> Step {
        match (self.mech, initial) {
            (Mechanism::Plain | Mechanism::ScramSha256, None) => Step::Challenge(Vec::new()),
            (Mechanism::Plain | Mechanism::ScramSha256, Some(r)) => self.step(&r),
            (Mechanism::Login, None) => {
                self.state = State::LoginUser;
                Step::Challenge(b"Username:".to_vec())
            }
            (Mechanism::Login, Some(r)) => {
                self.state = State::LoginUser;
                self.step(&r)
            }
            (Mechanism::CramMd5, Some(_)) => Step::Malformed("CRAM-MD5 takes no initial response"),
            (Mechanism::CramMd5, None) => {
                let mut b = [0u8; 8];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
                let challenge = format!(
                    "<{}.{}@{}>",
                    u64::from_be_bytes(b),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    self.hostname
                );
                self.state = State::Cram(challenge.clone());
                Step::Challenge(challenge.into_bytes())
            }
        }
    }

    /// The next step after a (decoded) response.
    pub fn step(&mut self, resp: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (self.mech, state) {
            (Mechanism::Plain, State::Start) => plain(resp),
            (Mechanism::Login, State::LoginUser) => match utf8(resp) {
                Some(u) if !u.is_empty() => {
                    self.state = State::LoginPassword(u);
                    Step::Challenge(b"Password:".to_vec())
                }
                _ => Step::Malformed("bad user name"),
            },
            (Mechanism::Login, State::LoginPassword(user)) => match utf8(resp) {
                Some(password) => Step::Verify { user, password },
                None => Step::Malformed("bad password"),
            },
            (Mechanism::CramMd5, State::Cram(challenge)) => self.cram(&challenge, resp),
            (Mechanism::ScramSha256, State::Start) => self.scram_first(resp),
            (Mechanism::ScramSha256, s @ State::ScramFinal { .. }) => self.scram_final(s, resp),
            (Mechanism::ScramSha256, State::ScramDone(user)) => {
                if resp.is_empty() {
                    Step::Success(user)
                } else {
                    Step::Malformed("expected an empty response")
                }
            }
            _ => Step::Fail("exchange out of order"),
        }
    }

    fn cram(&self, challenge: &str, resp: &[u8]) -> Step {
        let Some(text) = utf8(resp) else {
            return Step::Malformed("bad CRAM-MD5 response");
        };
        let Some((user, digest)) = text.rsplit_once(' ') else {
            return Step::Malformed("bad CRAM-MD5 response");
        };
        let Some(Credential::Plain(pw)) = self.auth.db.get(user) else {
            return Step::Fail("no clear-text password for CRAM-MD5");
        };
        let mut m = <Hmac<md5::Md5> as Mac>::new_from_slice(pw.as_bytes())
            .unwrap_or_else(|_| <Hmac<md5::Md5> as Mac>::new(&Default::default()));
        m.update(challenge.as_bytes());
        let want: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if ct_eq(want.as_bytes(), digest.to_ascii_lowercase().as_bytes()) {
            Step::Success(user.to_string())
        } else {
            Step::Fail("wrong password")
        }
    }

    fn scram_first(&mut self, resp: &[u8]) -> Step {
        let Some(text) = utf8(resp) else {
            return Step::Malformed("bad client-first-message");
        };
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Step::Malformed("bad client-first-message");
        };
        match cbind {
            "n" | "y" => {}
            _ => return Step::Fail("channel binding is not supported"),
        }
        let mut user = None;
        let mut cnonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_at_checked(2)) {
                (0, Some(("n=", v))) => user = sasl_name(v),
                (1, Some(("r=", v)))
                    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b',') =>
                {
                    cnonce = Some(v.to_string());
                }
                (0, Some(("m=", _))) => return Step::Fail("mandatory extension not supported"),
                (0 | 1, _) => return Step::Malformed("bad client-first-message"),
                _ => {}
            }
        }
        let (Some(user), Some(cnonce)) = (user, cnonce) else {
            return Step::Malformed("bad client-first-message");
        };
        if let Some(z) = authzid.strip_prefix("a=") {
            if sasl_name(z).as_deref() != Some(user.as_str()) {
                return Step::Fail("authorization identity differs from the user");
            }
        } else if !authzid.is_empty() {
            return Step::Malformed("bad authzid");
        }
        let (keys, known) = self.auth.scram_keys(&user);
        let nonce = format!("{cnonce}{}", nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        self.state = State::ScramFinal {
            user,
            keys,
            known,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            gs2: format!("{cbind},{authzid},"),
            nonce,
        };
        Step::Challenge(server_first.into_bytes())
    }

    fn scram_final(&mut self, state: State, resp: &[u8]) -> Step {
        let State::ScramFinal {
            user,
            keys,
            known,
            client_first_bare,
            server_first,
            gs2,
            nonce,
        } = state
        else {
            return Step::Fail("exchange out of order");
        };
        let Some(text) = utf8(resp) else {
            return Step::Malformed("bad client-final-message");
        };
        let Some(pos) = text.rfind(",p=") else {
            return Step::Malformed("bad client-final-message");
        };
        let without_proof = &text[..pos];
        let Ok(proof) = B64.decode(&text[pos + 3..]) else {
            return Step::Malformed("bad proof");
        };
        let mut c = None;
        let mut r = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                c = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                r = Some(v);
            }
        }
        if c.and_then(|c| B64.decode(c).ok()).as_deref() != Some(gs2.as_bytes()) {
            return Step::Fail("channel binding data differs");
        }
        if r != Some(nonce.as_str()) {
            return Step::Fail("nonce differs");
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac256(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != 32 || !known {
            return Step::Fail("wrong password");
        }
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        if !ct_eq(&stored, &keys.stored_key) {
            return Step::Fail("wrong password");
        }
        let server_sig = hmac256(&keys.server_key, auth_message.as_bytes());
        self.state = State::ScramDone(user);
        Step::Challenge(format!("v={}", B64.encode(server_sig)).into_bytes())
    }
}

/// PLAIN: `[authzid] NUL authcid NUL passwd`.
fn plain(resp: &[u8]) -> Step {
    let mut parts = resp.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Malformed("bad PLAIN response");
    };
    let (Some(authz), Some(user), Some(password)) = (utf8(authz), utf8(user), utf8(pass)) else {
        return Step::Malformed("bad PLAIN response");
    };
    if user.is_empty() {
        return Step::Malformed("empty user name");
    }
    if !authz.is_empty() && authz != user {
        return Step::Fail("authorization identity differs from the user");
    }
    Step::Verify { user, password }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(file: &str) -> Arc<AuthServer> {
        let db = PasswordDb::parse(file, "test").unwrap();
        Arc::new(AuthServer::new(db, &AuthConfig::default()))
    }

    #[test]
    fn file_forms_and_errors() {
        let argon = {
            use argon2::PasswordHasher as _;
            let salt = argon2::password_hash::SaltString::from_b64("c29tZXNhbHQxMjM0").unwrap();
            argon2::Argon2::default()
                .hash_password(b"pw1", &salt)
                .unwrap()
                .to_string()
        };
        let sha =
            sha_crypt::sha512_simple("pw2", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
        let scram = ScramKeys::derive(b"pw3", b"salt", 4096).to_file_form();
        let text = format!("# users\n\na:{argon}\nb:{sha}\r\nc:{scram}\nd:{{PLAIN}}pw:4\n");
        let db = PasswordDb::parse(&text, "f").unwrap();
        assert!(db.verify_password("a", "pw1"));
        assert!(!db.verify_password("a", "pw2"));
        assert!(db.verify_password("b", "pw2"));
        assert!(!db.verify_password("b", "pw1"));
        assert!(db.verify_password("c", "pw3"));
        assert!(!db.verify_password("c", "pw"));
        assert!(db.verify_password("d", "pw:4"));
        assert!(!db.verify_password("nobody", "pw:4"));
        for bad in [
            "nocolon",
            ":{PLAIN}x",
            "u:$y$j9T$abc",
            "u:md5hash",
            "u:SCRAM-SHA-256$0:AA==$AA==:AA==",
        ] {
            assert!(
                matches!(
                    PasswordDb::parse(bad, "f"),
                    Err(AuthError::Line { line: 1, .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_and_login() {
        let s = server("u:{PLAIN}p");
        let mut e = Exchange::new(Mechanism::Plain, Arc::clone(&s), "h");
        assert_eq!(
            e.start(Some(b"\0u\0p".to_vec())),
            Step::Verify {
                user: "u".into(),
                password: "p".into()
            }
        );
        let mut e = Exchange::new(Mechanism::Plain, Arc::clone(&s), "h");
        assert_eq!(e.start(None), Step::Challenge(vec![]));
        assert!(matches!(e.step(b"x\0u\0p"), Step::Fail(_)));
        let mut e = Exchange::new(Mechanism::Plain, Arc::clone(&s), "h");
        assert!(matches!(e.start(Some(b"u p".to_vec())), Step::Malformed(_)));
        let mut e = Exchange::new(Mechanism::Login, s, "h");
        assert_eq!(e.start(None), Step::Challenge(b"Username:".to_vec()));
        assert_eq!(e.step(b"u"), Step::Challenge(b"Password:".to_vec()));
        assert!(matches!(e.step(b"p"), Step::Verify { .. }));
    }

    #[test]
    fn cram_md5() {
        let s = server("u:{PLAIN}tanstaaftanstaaf\nh:$6$abc$def");
        let mut e = Exchange::new(Mechanism::CramMd5, Arc::clone(&s), "h");
        let Step::Challenge(c) = e.start(None) else {
            panic!()
        };
        let mut m = <Hmac<md5::Md5> as Mac>::new_from_slice(b"tanstaaftanstaaf").unwrap();
        m.update(&c);
        let hex: String = m
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            e.step(format!("u {hex}").as_bytes()),
            Step::Success("u".into())
        );
        let mut e = Exchange::new(Mechanism::CramMd5, Arc::clone(&s), "h");
        e.start(None);
        assert!(matches!(
            e.step(format!("u {}", "0".repeat(32)).as_bytes()),
            Step::Fail(_)
        ));
        let mut e = Exchange::new(Mechanism::CramMd5, s, "h");
        e.start(None);
        assert!(matches!(
            e.step(format!("h {hex}").as_bytes()),
            Step::Fail(_)
        ));
    }

    /// The client side of SCRAM-SHA-256, for the tests.
    fn scram_client(e: &mut Exchange, user: &str, pw: &str) -> Step {
        let first_bare = format!("n={user},r=clientnonce");
        let Step::Challenge(sf) = e.start(Some(format!("n,,{first_bare}").into_bytes())) else {
            panic!()
        };
        let sf = String::from_utf8(sf).unwrap();
        let mut it = sf.split(',');
        let r = it.next().unwrap().strip_prefix("r=").unwrap().to_string();
        assert!(r.starts_with("clientnonce") && r.len() > 11);
        let salt = B64
            .decode(it.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iter: u32 = it
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let k = ScramKeys::derive(pw.as_bytes(), &salt, iter);
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(pw.as_bytes(), &salt, iter);
        let client_key = hmac256(&salted, b"Client Key");
        let without = format!("c={},r={r}", B64.encode("n,,"));
        let am = format!("{first_bare},{sf},{without}");
        let sig = hmac256(&k.stored_key, am.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        let step = e.step(format!("{without},p={}", B64.encode(proof)).as_bytes());
        if let Step::Challenge(v) = &step {
            let want = format!("v={}", B64.encode(hmac256(&k.server_key, am.as_bytes())));
            assert_eq!(v, want.as_bytes());
            return e.step(b"");
        }
        step
    }

    #[test]
    fn scram_sha256() {
        let stored = ScramKeys::derive(b"secret", b"NaCl", 4096).to_file_form();
        let s = server(&format!("p:{{PLAIN}}pencil\nk:{stored}\nx:$6$a$b"));
        let t = |u: &str, pw: &str| {
            scram_client(
                &mut Exchange::new(Mechanism::ScramSha256, Arc::clone(&s), "h"),
                u,
                pw,
            )
        };
        assert_eq!(t("p", "pencil"), Step::Success("p".into()));
        assert_eq!(t("k", "secret"), Step::Success("k".into()));
        assert!(matches!(t("p", "pen"), Step::Fail(_)));
        assert!(matches!(t("nobody", "pencil"), Step::Fail(_)));
        assert!(matches!(t("x", "a"), Step::Fail(_)));
        let mut e = Exchange::new(Mechanism::ScramSha256, s, "h");
        assert!(matches!(
            e.start(Some(b"p=tls-unique,,n=p,r=a".to_vec())),
            Step::Fail(_)
        ));
    }

    #[test]
    fn sasl_names() {
        assert_eq!(sasl_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(sasl_name("a=2"), None);
        assert_eq!(sasl_name("a=XX"), None);
    }

    #[test]
    fn fail_window() {
        let t = FailTable::new(2);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same64: IpAddr = "2001:db8::2".parse().unwrap();
        let now = Instant::now();
        assert!(!t.blocked(ip, now));
        t.record(ip, now);
        t.record(same64, now);
        assert!(t.blocked(ip, now));
        assert!(!t.blocked("192.0.2.1".parse().unwrap(), now));
        assert!(!t.blocked(ip, now + FAIL_WINDOW));
    }

    #[test]
    fn mechanism_policy() {
        let mut c = AuthConfig::default();
        c.flags.noplaintext = true;
        let s = AuthServer::new(PasswordDb::default(), &c);
        assert_eq!(s.mechanisms, [Mechanism::CramMd5, Mechanism::ScramSha256]);
        c.flags.mutual_auth = true;
        let s = AuthServer::new(PasswordDb::default(), &c);
        assert_eq!(s.mechanisms, [Mechanism::ScramSha256]);
        assert!(s.trusts(Mechanism::Plain));
    }
}
