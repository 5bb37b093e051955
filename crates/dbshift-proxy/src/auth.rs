//! Authentication: which account the server would pick for a client, checking the client's
//! answer against that account, and what a session keeps to authenticate again to any
//! backend as its user.
//!
//! mysql_native_password needs no plaintext password. The server stores H2 =
//! SHA1(SHA1(password)). A client answers a scramble S with R = SHA1(password) XOR SHA1(S +
//! H2). Knowing H2, the proxy recovers H1 = SHA1(password) = R XOR SHA1(S + H2), checks
//! SHA1(H1) == H2 exactly as the server would, and can then answer any later scramble S' of any
//! backend with H1 XOR SHA1(S' + H2).
//!
//! MariaDB's ed25519 stores a public key: the proxy verifies the client's signature of its
//! nonce with it, but signing a backend's nonce needs the password (the key is derived from
//! SHA512(password)), which only the secrets file gives. caching_sha2_password (MySQL 8) is
//! answered from the password too.
//!
//! H1 and passwords are as powerful as the account: they live only in memory (zeroized when
//! dropped), are never logged, never formatted (`Debug` prints `***`) and never leave the
//! process except as a one-time answer to a backend's challenge (or, for caching_sha2_password's
//! full authentication, over TLS or RSA-encrypted, as a client would send it).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use mysql_async::prelude::Queryable;
use sha1::{Digest, Sha1};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::protocol::NATIVE_PASSWORD;

/// MariaDB's ed25519 plugin: the server side's name (`mysql.user.plugin`) and the client's.
pub const ED25519: &str = "ed25519";
pub const CLIENT_ED25519: &str = "client_ed25519";
/// MySQL 8's default plugin.
pub const CACHING_SHA2: &str = "caching_sha2_password";
/// MariaDB 11.6+; not supported (refused by name).
pub const PARSEC: &str = "parsec";

/// SHA1(password) of one client session. Zeroized on drop.
pub struct H1([u8; 20]);

impl Drop for H1 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for H1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H1(***)")
    }
}

/// A plaintext password from the secrets file. Zeroized on drop; `Debug` prints `***`.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(p: String) -> Password {
        Password(Zeroizing::new(p))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The passwords the proxy may use towards servers, by user name, read from a file the proxy's
/// OS user alone may read. `Debug` names the users only.
#[derive(Clone, Default)]
pub struct Secrets {
    by_user: HashMap<String, Password>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} users, ***)", self.by_user.len())
    }
}

impl Secrets {
    /// Read a secrets file: TOML, one `user = "password"` line per user. Refused when the
    /// group or others may read or write it (as ssh refuses an open private key).
    pub fn load(path: &Path) -> Result<Secrets> {
        let bad = |m: String| Error::Config(format!("secrets file {}: {m}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "mode {:o} lets the group or others read it; chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        // The parser's error names a line, never the value on it.
        let table: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
            bad(format!(
                "not `user = \"password\"` lines{}",
                e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default()
            ))
        })?;
        Ok(Secrets {
            by_user: table
                .into_iter()
                .map(|(u, p)| (u, Password::new(p)))
                .collect(),
        })
    }

    /// A fixed set (tests, embedding programs).
    pub fn from_map(map: BTreeMap<String, String>) -> Secrets {
        Secrets {
            by_user: map
                .into_iter()
                .map(|(u, p)| (u, Password::new(p)))
                .collect(),
        }
    }

    pub fn get(&self, user: &str) -> Option<&Password> {
        self.by_user.get(user)
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

/// What a session needs to authenticate to any backend as its user.
#[derive(Debug)]
pub enum SessionSecret {
    /// The account has no password: the answer is empty.
    Empty,
    /// mysql_native_password with the stored hash H2 and the recovered H1.
    Native { h1: H1, h2: [u8; 20] },
    /// The password, from the secrets file (checked against the client's answer).
    Password(Password),
}

impl SessionSecret {
    /// The answer to a backend's challenge `scramble` for the client plugin `plugin`, or why
    /// this secret cannot give one.
    pub fn answer(&self, plugin: &str, scramble: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let nonce = &scramble[..scramble.len().min(20)];
        match (plugin, self) {
            (NATIVE_PASSWORD, SessionSecret::Empty)
            | (CACHING_SHA2, SessionSecret::Empty)
            | (CLIENT_ED25519, SessionSecret::Empty) => Ok(Vec::new()),
            (NATIVE_PASSWORD, SessionSecret::Native { h1, h2 }) => {
                let mask = sha1_two(nonce, h2);
                Ok(h1.0.iter().zip(mask).map(|(a, b)| a ^ b).collect())
            }
            (NATIVE_PASSWORD, SessionSecret::Password(p)) => {
                Ok(mysql_common::scramble::scramble_native(nonce, p.bytes())
                    .map(|a| a.to_vec())
                    .unwrap_or_default())
            }
            (CACHING_SHA2, SessionSecret::Password(p)) => {
                Ok(mysql_common::scramble::scramble_sha256(nonce, p.bytes())
                    .map(|a| a.to_vec())
                    .unwrap_or_default())
            }
            (CLIENT_ED25519, SessionSecret::Password(p)) => Ok(ed25519_sign(p, scramble).to_vec()),
            (CACHING_SHA2 | CLIENT_ED25519, SessionSecret::Native { .. }) => Err(format!(
                "the server asks for {plugin}, which needs the user's password; the proxy \
                     has only the mysql_native_password hash (add the user to the secrets file)"
            )),
            _ => Err(format!(
                "the server asks for authentication plugin {plugin}, which the proxy cannot answer"
            )),
        }
    }

    /// The password, when the session has it (caching_sha2_password's full authentication).
    pub fn password(&self) -> Option<&[u8]> {
        match self {
            SessionSecret::Password(p) => Some(p.bytes()),
            SessionSecret::Empty => Some(b""),
            SessionSecret::Native { .. } => None,
        }
    }
}

fn sha1_two(a: &[u8], b: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// MariaDB's ed25519 key of a password: the 64 bytes of SHA512(password) are the expanded
/// secret key (scalar from the first half, clamped; nonce prefix from the second), not a
/// 32-byte RFC 8032 seed.
fn ed25519_expanded(password: &Password) -> ed25519_dalek::hazmat::ExpandedSecretKey {
    let mut az: [u8; 64] = <sha2::Sha512 as sha2::Digest>::digest(password.bytes()).into();
    let key = ed25519_dalek::hazmat::ExpandedSecretKey::from_bytes(&az);
    az.zeroize();
    key
}

/// The public key MariaDB stores for `password` (`PASSWORD()` of an ed25519 account).
pub fn ed25519_public_key(password: &Password) -> [u8; 32] {
    let esk = ed25519_expanded(password);
    ed25519_dalek::VerifyingKey::from(&esk).to_bytes()
}

/// client_ed25519's answer: the signature of the server's nonce.
pub fn ed25519_sign(password: &Password, nonce: &[u8]) -> [u8; 64] {
    let esk = ed25519_expanded(password);
    let vk = ed25519_dalek::VerifyingKey::from(&esk);
    ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&esk, nonce, &vk).to_bytes()
}

/// Does `signature` sign `nonce` with the account's public key (standard Ed25519
/// verification, as the server's plugin does)?
pub fn ed25519_verify(public_key: &[u8; 32], nonce: &[u8], signature: &[u8]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    vk.verify_strict(nonce, &sig).is_ok()
}

/// caching_sha2_password's fast path: is `response` the client's scramble of `password`?
pub fn sha256_scramble_matches(scramble: &[u8], response: &[u8], password: &Password) -> bool {
    match mysql_common::scramble::scramble_sha256(scramble, password.bytes()) {
        Some(expected) => constant_time_eq(&expected, response),
        None => response.is_empty(),
    }
}

/// caching_sha2_password's full authentication without TLS: the password and a NUL, XORed
/// with the scramble, encrypted with the server's RSA public key (PEM) with OAEP padding, as
/// MySQL 8.0.5+ expects.
pub fn sha2_rsa_payload(
    password: &[u8],
    scramble: &[u8],
    public_key_pem: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    if scramble.is_empty() {
        return Err("empty scramble".into());
    }
    let mut clear: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(password.len() + 1));
    clear.extend_from_slice(password);
    clear.push(0);
    for (i, b) in clear.iter_mut().enumerate() {
        *b ^= scramble[i % scramble.len()];
    }
    let pem = public_key_pem.to_vec();
    let clear2 = clear.clone();
    // mysql_common panics on a malformed key: a key from a bad server fails the login only.
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&clear2, &pem))
        .map_err(|_| "the server's RSA public key cannot be used".to_string())
}

/// How an account's row stores its credential.
#[derive(Clone)]
pub enum Stored {
    /// No password (any plugin): the answer must be empty.
    Empty,
    /// mysql_native_password's H2.
    Native([u8; 20]),
    /// ed25519's public key.
    Ed25519([u8; 32]),
    /// A plugin whose stored form the proxy does not read (caching_sha2_password, unix_socket,
    /// PAM, parsec, ...).
    Other,
}

/// One account (one `mysql.user` row) that may match a user name.
#[derive(Clone)]
pub struct StoredCredential {
    /// The account's user name; empty for the anonymous account.
    pub user: String,
    /// The account's host pattern.
    pub host: String,
    pub plugin: String,
    pub stored: Stored,
    /// The account's transport rule (`REQUIRE ...`).
    pub tls: TlsRule,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl StoredCredential {
    /// A mysql_native_password row (`h2`: `None` is no password).
    pub fn native(user: &str, host: &str, h2: Option<[u8; 20]>) -> StoredCredential {
        StoredCredential {
            user: user.into(),
            host: host.into(),
            plugin: NATIVE_PASSWORD.into(),
            stored: h2.map_or(Stored::Empty, Stored::Native),
            tls: TlsRule::None,
        }
    }

    pub fn is_native(&self) -> bool {
        self.plugin.is_empty() || self.plugin == NATIVE_PASSWORD
    }
}

/// What an account requires of the client's connection (`mysql.user.ssl_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsRule {
    /// Nothing (`REQUIRE NONE`).
    #[default]
    None,
    /// TLS (`REQUIRE SSL`).
    Tls,
    /// A client certificate (`REQUIRE X509`, `ISSUER`, `SUBJECT`, `CIPHER`): the proxy
    /// terminates TLS and cannot pass the client's certificate on, so it refuses these.
    Certificate,
}

impl TlsRule {
    /// From `mysql.user.ssl_type` (`''`, `ANY`, `X509`, `SPECIFIED`).
    pub fn from_ssl_type(t: &str) -> TlsRule {
        match t.trim().to_ascii_uppercase().as_str() {
            "" => TlsRule::None,
            "ANY" => TlsRule::Tls,
            _ => TlsRule::Certificate,
        }
    }
}

/// Parse a stored native hash, `*` and 40 hex digits. Empty means no password.
pub fn parse_native_hash(s: &str) -> Option<Option<[u8; 20]>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(None);
    }
    let hex = s.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Some(out))
}

/// Parse an ed25519 account's stored key: base64 of 32 bytes (43 characters, no padding).
pub fn parse_ed25519_key(s: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let s = s.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .ok()?;
    bytes.try_into().ok()
}

/// The account the server picks for `user` connecting from `ip`, as MariaDB orders its
/// accounts: by host pattern, most specific first (an exact host or IP, or an IP/netmask,
/// before patterns with `_`, before patterns with `%`, `%` last), then a named user before the
/// anonymous user `''`; the first account whose user is `user` or `''` and whose host pattern
/// matches the client's address is the one. Host names are matched against the address only
/// (as a server with `skip_name_resolve`).
pub fn choose<'a>(
    rows: &'a [StoredCredential],
    user: &str,
    ip: IpAddr,
) -> Option<&'a StoredCredential> {
    let ip = canonical_ip(ip);
    let mut candidates: Vec<&StoredCredential> = rows
        .iter()
        .filter(|r| r.user.is_empty() || r.user == user)
        .collect();
    candidates.sort_by(|a, b| {
        host_generality(&a.host)
            .cmp(&host_generality(&b.host))
            .then(a.user.is_empty().cmp(&b.user.is_empty()))
            // MariaDB breaks the last ties by host text, descending.
            .then(b.host.cmp(&a.host))
    });
    candidates.into_iter().find(|r| host_matches(&r.host, ip))
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// How many addresses a host pattern admits, as a number that orders patterns the way
/// MariaDB does (its account sort): smaller is more specific. A pattern is described by its
/// literal characters (n), its `_` (one) and its runs of `%` (many); without `%` it admits
/// 'one-character positions' only, with `%` it admits strings up to the host length limit,
/// which dominates; prefix length before the first wildcard breaks ties (longer first).
fn host_generality(pattern: &str) -> u64 {
    const MAXLEN: u64 = 255;
    let (mut literal, mut one, mut many, mut prefix) = (0u64, 0u64, 0u64, 0u64);
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if many == 0 && one == 0 {
                    prefix = literal;
                }
                many += 1;
                while i + 1 < b.len() && b[i + 1] == b'%' {
                    i += 1;
                }
            }
            b'_' => {
                if many == 0 && one == 0 {
                    prefix = literal;
                }
                one += 1;
            }
            b'\\' if i + 1 < b.len() => {
                i += 1;
                literal += 1;
            }
            _ => literal += 1,
        }
        i += 1;
    }
    // An empty host is '%'.
    if b.is_empty() {
        many = 1;
    }
    let many = many.min(31);
    let one = one.min(31);
    let free = if many > 0 {
        MAXLEN.saturating_sub(literal + one)
    } else {
        0
    };
    let d = MAXLEN + 1;
    let d1 = d.min(32);
    // Longer prefixes are more specific: count them down.
    let p = MAXLEN - prefix.min(MAXLEN);
    let p = if many == 0 && one == 0 { 0 } else { p };
    if free > one {
        (((free * 2 + 1) * d + many) * d1 + one) * d + p
    } else {
        ((one * 2 * d + free) * d1 + many) * d + p
    }
}

/// Does the account host `pattern` admit a client at `ip`? `%` and `_` wildcards (`\`
/// escapes), or `address/netmask`.
pub fn host_matches(pattern: &str, ip: IpAddr) -> bool {
    if pattern.is_empty() {
        return true;
    }
    if let Some((net, mask)) = pattern.split_once('/') {
        if let (Ok(net), Ok(mask), IpAddr::V4(ip)) = (
            net.parse::<std::net::Ipv4Addr>(),
            mask.parse::<std::net::Ipv4Addr>(),
            ip,
        ) {
            let (net, mask, ip) = (u32::from(net), u32::from(mask), u32::from(ip));
            return ip & mask == net;
        }
    }
    wild_match(pattern.as_bytes(), ip.to_string().as_bytes())
}

fn wild_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'%') => {
            let rest = &pattern[1..];
            (0..=text.len()).any(|k| wild_match(rest, &text[k..]))
        }
        Some(b'_') => !text.is_empty() && wild_match(&pattern[1..], &text[1..]),
        Some(b'\\') if pattern.len() > 1 => {
            text.first()
                .is_some_and(|c| c.eq_ignore_ascii_case(&pattern[1]))
                && wild_match(&pattern[2..], &text[1..])
        }
        Some(c) => {
            text.first().is_some_and(|t| t.eq_ignore_ascii_case(c))
                && wild_match(&pattern[1..], &text[1..])
        }
    }
}

/// mysql_native_password: the client's answer `response` to `scramble` checked against H2
/// (`None`: no password). The session's secret when it matches.
pub fn verify_native(
    scramble: &[u8; 20],
    response: &[u8],
    h2: Option<&[u8; 20]>,
) -> Option<SessionSecret> {
    match (h2, response.len()) {
        (None, 0) => Some(SessionSecret::Empty),
        (Some(h2), 20) => {
            let mask = sha1_two(scramble, h2);
            let mut h1 = H1([0u8; 20]);
            for i in 0..20 {
                h1.0[i] = response[i] ^ mask[i];
            }
            let check: [u8; 20] = Sha1::digest(h1.0).into();
            constant_time_eq(&check, h2).then_some(SessionSecret::Native { h1, h2: *h2 })
        }
        _ => None,
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the proxy reads the stored hashes (H2) of the users it authenticates.
#[derive(Clone)]
pub enum AuthSource {
    /// Read `mysql.user` on the current backend as this (admin) user, over the same TLS as
    /// the client sessions. Follows the backend on a switch.
    Admin { user: String, password: String },
    /// Fixed hashes, user -> `*` + 40 hex digits as `mysql.user` shows them (an empty string
    /// is an account without password). For backends where no admin may read `mysql.user`.
    Hashes(BTreeMap<String, String>),
}

impl std::fmt::Debug for AuthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSource::Admin { user, .. } => write!(f, "Admin({user}, ***)"),
            AuthSource::Hashes(m) => write!(f, "Hashes({} users)", m.len()),
        }
    }
}

/// Looks up the accounts that may match `user`: its own rows and the anonymous ones. `pool`
/// is the admin pool of the current backend.
pub(crate) async fn lookup(
    source: &AuthSource,
    pool: Option<&mysql_async::Pool>,
    user: &str,
) -> Result<Vec<StoredCredential>> {
    match source {
        AuthSource::Hashes(m) => Ok(m
            .get(user)
            .and_then(|h| parse_native_hash(h))
            .map(|h2| vec![StoredCredential::native(user, "%", h2)])
            .unwrap_or_default()),
        AuthSource::Admin { .. } => {
            let pool = pool.ok_or_else(|| Error::AuthSource("no admin connection".into()))?;
            let mut conn = pool
                .get_conn()
                .await
                .map_err(|e| Error::AuthSource(e.to_string()))?;
            type Row = (String, String, String, String, Option<String>, String);
            // MariaDB's mysql.user view has both columns; MySQL has no Password column.
            let rows: Vec<Row> = match conn
                .exec(
                    "SELECT User, Host, plugin, authentication_string, Password, \
                     CAST(ssl_type AS CHAR) FROM mysql.user WHERE User IN (?, '')",
                    (user,),
                )
                .await
            {
                Ok(r) => r,
                Err(_) => conn
                    .exec::<(String, String, String, String, String), _, _>(
                        "SELECT User, Host, plugin, authentication_string, \
                         CAST(ssl_type AS CHAR) FROM mysql.user WHERE User IN (?, '')",
                        (user,),
                    )
                    .await
                    .map_err(|e| Error::AuthSource(e.to_string()))?
                    .into_iter()
                    .map(|(u, h, p, a, t)| (u, h, p, a, None, t))
                    .collect(),
            };
            Ok(rows.into_iter().filter_map(stored_row).collect())
        }
    }
}

/// One `mysql.user` row as the proxy reads it; `None` for a row it cannot read (a native hash
/// that is not `*` + 40 hex digits is an account nobody can log in to).
fn stored_row(
    (user, host, plugin, auth, password, ssl_type): (
        String,
        String,
        String,
        String,
        Option<String>,
        String,
    ),
) -> Option<StoredCredential> {
    let plugin = if plugin.is_empty() {
        NATIVE_PASSWORD.to_string()
    } else {
        plugin
    };
    let stored = if plugin == NATIVE_PASSWORD {
        let text = if auth.is_empty() {
            password.unwrap_or_default()
        } else {
            auth
        };
        parse_native_hash(&text)?.map_or(Stored::Empty, Stored::Native)
    } else if plugin == ED25519 {
        if auth.trim().is_empty() {
            Stored::Empty
        } else {
            Stored::Ed25519(parse_ed25519_key(&auth)?)
        }
    } else if auth.is_empty() && plugin == CACHING_SHA2 {
        Stored::Empty
    } else {
        Stored::Other
    };
    Some(StoredCredential {
        user,
        host,
        plugin,
        stored,
        tls: TlsRule::from_ssl_type(&ssl_type),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2_of(pw: &str) -> [u8; 20] {
        let h1: [u8; 20] = Sha1::digest(pw.as_bytes()).into();
        Sha1::digest(h1).into()
    }

    fn client_answer(pw: &str, scramble: &[u8]) -> Vec<u8> {
        let h1: [u8; 20] = Sha1::digest(pw.as_bytes()).into();
        let mask = sha1_two(scramble, &h2_of(pw));
        h1.iter().zip(mask).map(|(a, b)| a ^ b).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn recovered_h1_answers_a_new_scramble_as_the_password_would() {
        let h2 = h2_of("s3cret");
        let s1 = [7u8; 20];
        let secret = verify_native(&s1, &client_answer("s3cret", &s1), Some(&h2))
            .expect("the right password is accepted");
        let s2 = [42u8; 20];
        assert_eq!(
            secret.answer(NATIVE_PASSWORD, &s2).unwrap(),
            client_answer("s3cret", &s2)
        );
        assert!(verify_native(&s1, &client_answer("wrong", &s1), Some(&h2)).is_none());
        // A native hash cannot answer plugins that need the password.
        assert!(secret.answer(CLIENT_ED25519, &[1; 32]).is_err());
    }

    #[test]
    fn stored_hash_parses() {
        let h = h2_of("x");
        let text: String = std::iter::once("*".to_string())
            .chain(h.iter().map(|b| format!("{b:02X}")))
            .collect();
        assert_eq!(parse_native_hash(&text), Some(Some(h)));
        assert_eq!(parse_native_hash(""), Some(None));
        assert_eq!(parse_native_hash("nonsense"), None);
    }

    /// The server's order: exact hosts and netmasks, then `_` patterns, then `%` patterns
    /// (longer literal parts first), `%` last; within one host, a named user before `''`.
    #[test]
    fn the_account_chosen_is_the_servers() {
        let rows = vec![
            StoredCredential::native("u", "%", Some(h2_of("any"))),
            StoredCredential::native("", "127.0.0.1", Some(h2_of("anon-exact"))),
            StoredCredential::native("u", "127.0.0.%", Some(h2_of("subnet"))),
            StoredCredential::native("u", "10.1.0.0/255.255.0.0", Some(h2_of("mask"))),
            StoredCredential::native("u", "192.168.1._", Some(h2_of("one"))),
            StoredCredential::native("", "%", Some(h2_of("anon-any"))),
            StoredCredential::native("v", "127.0.0.1", Some(h2_of("other user"))),
        ];
        let pick = |user: &str, addr: &str| {
            choose(&rows, user, ip(addr)).map(|r| (r.user.clone(), r.host.clone()))
        };
        // The anonymous account at an exact host beats the named user's pattern (MariaDB's
        // well-known rule), as the server decides.
        assert_eq!(
            pick("u", "127.0.0.1"),
            Some(("".into(), "127.0.0.1".into()))
        );
        assert_eq!(
            pick("u", "127.0.0.2"),
            Some(("u".into(), "127.0.0.%".into()))
        );
        assert_eq!(
            pick("u", "10.1.2.3"),
            Some(("u".into(), "10.1.0.0/255.255.0.0".into()))
        );
        assert_eq!(
            pick("u", "192.168.1.7"),
            Some(("u".into(), "192.168.1._".into()))
        );
        assert_eq!(pick("u", "192.168.1.77"), Some(("u".into(), "%".into())));
        assert_eq!(pick("nobody", "8.8.8.8"), Some(("".into(), "%".into())));
        assert_eq!(
            pick("v", "127.0.0.1"),
            Some(("v".into(), "127.0.0.1".into()))
        );
        // An IPv4 client seen on an IPv6 socket.
        assert_eq!(
            pick("u", "::ffff:10.1.9.9"),
            Some(("u".into(), "10.1.0.0/255.255.0.0".into()))
        );
        assert_eq!(
            choose(&rows[..1], "w", ip("127.0.0.1")).map(|r| &r.host),
            None
        );
    }

    #[test]
    fn host_patterns_match_as_the_server_does() {
        assert!(host_matches("%", ip("1.2.3.4")));
        assert!(host_matches("1.2.3.%", ip("1.2.3.4")));
        assert!(!host_matches("1.2.3.%", ip("1.2.4.4")));
        assert!(host_matches("1.2.3._", ip("1.2.3.4")));
        assert!(!host_matches("1.2.3._", ip("1.2.3.44")));
        assert!(host_matches("1.2.0.0/255.255.0.0", ip("1.2.200.1")));
        assert!(!host_matches("1.2.0.0/255.255.0.0", ip("1.3.0.1")));
        assert!(!host_matches("localhost", ip("127.0.0.1")));
    }

    /// MariaDB's ed25519 (az = SHA512(password), signed with the expanded key), checked against
    /// mysql_common's independent implementation (the one mysql_async's client_ed25519 uses)
    /// and against the server's stored form of a known password.
    #[test]
    fn ed25519_signs_as_mariadbs_client_and_verifies() {
        let pw = Password::new("ed-pw".into());
        let nonce = [9u8; 32];
        let sig = ed25519_sign(&pw, &nonce);
        let pk = ed25519_public_key(&pw);
        assert!(ed25519_verify(&pk, &nonce, &sig));
        assert!(!ed25519_verify(&pk, &[8u8; 32], &sig));
        let other = ed25519_public_key(&Password::new("other".into()));
        assert!(!ed25519_verify(&other, &nonce, &sig));
        // SELECT PASSWORD('secret') on MariaDB 10.11 with auth_ed25519 installed (ED25519_KEY).
        let stored = parse_ed25519_key("ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY")
            .expect("43 base64 characters");
        assert_eq!(ed25519_public_key(&Password::new("secret".into())), stored);
    }

    /// caching_sha2_password's fast-path scramble: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) +
    /// nonce), computed here from its definition.
    #[test]
    fn caching_sha2_fast_path_is_the_protocols() {
        use sha2::Sha256;
        let pw = Password::new("sha2-pw".into());
        let nonce = b"abcdefghijklmnopqrst";
        let s1: [u8; 32] = <Sha256 as sha2::Digest>::digest(b"sha2-pw").into();
        let s2: [u8; 32] = <Sha256 as sha2::Digest>::digest(s1).into();
        let mut h = <Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, s2);
        sha2::Digest::update(&mut h, nonce);
        let mask: [u8; 32] = sha2::Digest::finalize(h).into();
        let expected: Vec<u8> = s1.iter().zip(mask).map(|(a, b)| a ^ b).collect();
        let secret = SessionSecret::Password(pw.clone());
        assert_eq!(secret.answer(CACHING_SHA2, nonce).unwrap(), expected);
        assert!(sha256_scramble_matches(nonce, &expected, &pw));
        assert!(!sha256_scramble_matches(
            nonce,
            &expected,
            &Password::new("wrong".into())
        ));
        // No password: the empty answer.
        assert!(SessionSecret::Empty
            .answer(CACHING_SHA2, nonce)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn secrets_never_print_and_refuse_open_files() {
        let s = Secrets::from_map(BTreeMap::from([("u".into(), "hunter2".into())]));
        assert!(!format!("{s:?}").contains("hunter2"));
        let secret = SessionSecret::Password(s.get("u").unwrap().clone());
        assert!(!format!("{secret:?}").contains("hunter2"));
        let dir = std::env::temp_dir().join(format!("dbshift-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secrets.toml");
        std::fs::write(&f, "u = \"hunter2\"\n\"odd user\" = \"p w\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Secrets::load(&f).expect_err("group-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = Secrets::load(&f).unwrap();
        assert_eq!(loaded.get("odd user").map(|p| p.bytes()), Some(&b"p w"[..]));
        std::fs::write(&f, "u = hunter2\n").unwrap();
        let e = Secrets::load(&f).expect_err("not TOML");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
