//! mysql_native_password without plaintext passwords.
//!
//! The server stores H2 = SHA1(SHA1(password)). A client answers a scramble S with
//! R = SHA1(password) XOR SHA1(S + H2). Knowing H2, the proxy recovers H1 = SHA1(password) =
//! R XOR SHA1(S + H2), checks SHA1(H1) == H2 exactly as the server would, and can then answer
//! any later scramble S' of any backend with H1 XOR SHA1(S' + H2).
//!
//! H1 is as powerful as the password towards every server that stores H2: it lives only in
//! memory ([`H1`] is zeroized when dropped), is never logged, never formatted (`Debug` prints
//! nothing of it) and never leaves the process except as a one-time scramble answer.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use sha1::{Digest, Sha1};
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::protocol::NATIVE_PASSWORD;

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

/// What a session needs to authenticate to any backend as its user.
#[derive(Debug)]
pub enum SessionSecret {
    /// The account has no password: the answer is empty.
    Empty,
    /// mysql_native_password with the stored hash H2 and the recovered H1.
    Native { h1: H1, h2: [u8; 20] },
}

impl SessionSecret {
    /// The answer to a backend's scramble.
    pub fn answer(&self, scramble: &[u8]) -> Vec<u8> {
        match self {
            SessionSecret::Empty => Vec::new(),
            SessionSecret::Native { h1, h2 } => {
                let mask = sha1_two(&scramble[..scramble.len().min(20)], h2);
                let mut out = vec![0u8; 20];
                for i in 0..20 {
                    out[i] = h1.0[i] ^ mask[i];
                }
                out
            }
        }
    }
}

fn sha1_two(a: &[u8], b: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// One stored credential of a user (one `mysql.user` row).
#[derive(Clone)]
pub struct StoredCredential {
    pub plugin: String,
    /// H2 for mysql_native_password; `None` when the account has no password.
    pub h2: Option<[u8; 20]>,
    /// The account's transport rule (`REQUIRE ...`).
    pub tls: TlsRule,
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

    /// The strictest rule of a user's rows (one per host pattern): the proxy cannot tell
    /// which row the server will pick for the backend connection, so it errs on refusing.
    pub fn of(stored: &[StoredCredential]) -> TlsRule {
        stored.iter().map(|c| c.tls).max().unwrap_or_default()
    }
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
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

/// The outcome of checking a client's answer.
#[derive(Debug)]
pub enum Verdict {
    Accepted(SessionSecret),
    /// Wrong password or unknown user: the server's own "Access denied".
    Denied,
    /// The account uses a plugin the proxy cannot re-authenticate with.
    UnsupportedPlugin(String),
}

/// Check the client's answer `response` to `scramble` against the user's stored credentials.
/// Several rows (hosts) may exist; any native row that matches is accepted (the backend checks
/// again with its own row when the proxy authenticates there).
pub fn verify(scramble: &[u8; 20], response: &[u8], stored: &[StoredCredential]) -> Verdict {
    let mut other_plugin = None;
    for cred in stored {
        let native = cred.plugin.is_empty() || cred.plugin == NATIVE_PASSWORD;
        if !native {
            other_plugin.get_or_insert_with(|| cred.plugin.clone());
            continue;
        }
        match (&cred.h2, response.len()) {
            (None, 0) => return Verdict::Accepted(SessionSecret::Empty),
            (Some(h2), 20) => {
                let mask = sha1_two(scramble, h2);
                let mut h1 = H1([0u8; 20]);
                for i in 0..20 {
                    h1.0[i] = response[i] ^ mask[i];
                }
                let check: [u8; 20] = Sha1::digest(h1.0).into();
                if constant_time_eq(&check, h2) {
                    return Verdict::Accepted(SessionSecret::Native { h1, h2: *h2 });
                }
            }
            _ => {}
        }
    }
    match other_plugin {
        Some(p)
            if !stored
                .iter()
                .any(|c| c.plugin.is_empty() || c.plugin == NATIVE_PASSWORD) =>
        {
            Verdict::UnsupportedPlugin(p)
        }
        _ => Verdict::Denied,
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

/// Looks up stored credentials. `pool` is the admin pool of the current backend.
pub(crate) async fn lookup(
    source: &AuthSource,
    pool: Option<&mysql_async::Pool>,
    user: &str,
) -> Result<Vec<StoredCredential>> {
    match source {
        AuthSource::Hashes(m) => Ok(m
            .get(user)
            .and_then(|h| parse_native_hash(h))
            .map(|h2| {
                vec![StoredCredential {
                    plugin: NATIVE_PASSWORD.to_string(),
                    h2,
                    tls: TlsRule::None,
                }]
            })
            .unwrap_or_default()),
        AuthSource::Admin { .. } => {
            let pool = pool.ok_or_else(|| Error::AuthSource("no admin connection".into()))?;
            let mut conn = pool
                .get_conn()
                .await
                .map_err(|e| Error::AuthSource(e.to_string()))?;
            // MariaDB's mysql.user view has both columns; MySQL has no Password column.
            let rows: Vec<(String, String, Option<String>, String)> = match conn
                .exec(
                    "SELECT plugin, authentication_string, Password, CAST(ssl_type AS CHAR) \
                     FROM mysql.user WHERE User = ?",
                    (user,),
                )
                .await
            {
                Ok(r) => r,
                Err(_) => conn
                    .exec::<(String, String, String), _, _>(
                        "SELECT plugin, authentication_string, CAST(ssl_type AS CHAR) \
                         FROM mysql.user WHERE User = ?",
                        (user,),
                    )
                    .await
                    .map_err(|e| Error::AuthSource(e.to_string()))?
                    .into_iter()
                    .map(|(p, a, t)| (p, a, None, t))
                    .collect(),
            };
            let mut out = Vec::new();
            for (plugin, auth, password, ssl_type) in rows {
                let native = plugin.is_empty() || plugin == NATIVE_PASSWORD;
                let h2 = if native {
                    let text = if auth.is_empty() {
                        password.unwrap_or_default()
                    } else {
                        auth
                    };
                    match parse_native_hash(&text) {
                        Some(h) => h,
                        None => continue,
                    }
                } else {
                    None
                };
                out.push(StoredCredential {
                    plugin: if plugin.is_empty() {
                        NATIVE_PASSWORD.to_string()
                    } else {
                        plugin
                    },
                    h2,
                    tls: TlsRule::from_ssl_type(&ssl_type),
                });
            }
            Ok(out)
        }
    }
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

    #[test]
    fn recovered_h1_answers_a_new_scramble_as_the_password_would() {
        let stored = vec![StoredCredential {
            plugin: NATIVE_PASSWORD.into(),
            h2: Some(h2_of("s3cret")),
            tls: TlsRule::None,
        }];
        let s1 = [7u8; 20];
        let Verdict::Accepted(secret) = verify(&s1, &client_answer("s3cret", &s1), &stored) else {
            panic!("the right password is accepted");
        };
        let s2 = [42u8; 20];
        assert_eq!(secret.answer(&s2), client_answer("s3cret", &s2));
        assert!(matches!(
            verify(&s1, &client_answer("wrong", &s1), &stored),
            Verdict::Denied
        ));
    }

    #[test]
    fn other_plugins_are_named() {
        let stored = vec![StoredCredential {
            plugin: "ed25519".into(),
            h2: None,
            tls: TlsRule::None,
        }];
        match verify(&[0; 20], &[1; 20], &stored) {
            Verdict::UnsupportedPlugin(p) => assert_eq!(p, "ed25519"),
            v => panic!("unexpected {v:?}"),
        }
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
}
