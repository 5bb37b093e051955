//! What the probe connects to, resolved again on every new connection: a cluster name follows
//! its writer through a switchover, an instance id stays on that instance, a URL is fixed.
//!
//! A password never leaves this module in a printable form: [`TargetResolver::describe`] and
//! the `Debug` impls show the user, host and port only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_provider::Provider;

use crate::error::{Error, Result};

/// The environment variable a URL target's password is read from when the URL has none.
pub const PASSWORD_ENV: &str = "DBSHIFT_PROBE_PASSWORD";

/// A parsed `mysql://user[:password]@host:port[/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTarget {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
}

impl std::fmt::Debug for UrlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UrlTarget({})", self.redacted())
    }
}

impl UrlTarget {
    /// Parse a URL. `env_password` is used when the URL carries no password (the CLI passes
    /// `DBSHIFT_PROBE_PASSWORD`), so a password need not appear in `ps` output.
    pub fn parse(url: &str, env_password: Option<String>) -> Result<UrlTarget> {
        let bad = |why: &str| {
            Error::BadInput(format!(
                "bad probe URL ({why}); expected mysql://user[:password]@host:port[/db]"
            ))
        };
        let rest = url
            .strip_prefix("mysql://")
            .ok_or_else(|| bad("it must start with mysql://"))?;
        // The last '@' splits credentials from the host, so a password may contain '@'.
        let at = rest
            .rfind('@')
            .ok_or_else(|| bad("no user@ before the host"))?;
        let (cred, hostpart) = (&rest[..at], &rest[at + 1..]);
        let (user, password) = match cred.split_once(':') {
            Some((u, p)) => (u, Some(p.to_string())),
            None => (cred, None),
        };
        if user.is_empty() {
            return Err(bad("the user is empty"));
        }
        let (hostport, database) = match hostpart.split_once('/') {
            Some((hp, db)) if !db.is_empty() => (hp, Some(db.to_string())),
            Some((hp, _)) => (hp, None),
            None => (hostpart, None),
        };
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| bad("no :port after the host"))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        Ok(UrlTarget {
            user: user.to_string(),
            password: password.or(env_password).unwrap_or_default(),
            host: host.to_string(),
            port,
            database,
        })
    }

    /// `mysql://user@host:port[/db]`: the URL without its password.
    pub fn redacted(&self) -> String {
        let db = self
            .database
            .as_deref()
            .map(|d| format!("/{d}"))
            .unwrap_or_default();
        format!("mysql://{}@{}:{}{db}", self.user, self.host, self.port)
    }
}

#[derive(Clone)]
enum Kind {
    Provider {
        provider: Arc<dyn Provider>,
        name: String,
    },
    Url(UrlTarget),
}

/// Turns the probe's target into connection options, asking the provider again each time.
#[derive(Clone)]
pub struct TargetResolver {
    kind: Kind,
    tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for TargetResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetResolver({})", self.describe())
    }
}

impl TargetResolver {
    /// A cluster name (follows its current writer) or an instance id, through a provider. The
    /// provider's application user and CA bundle are used: the probe sees what the application
    /// sees.
    pub fn provider(provider: Arc<dyn Provider>, name: impl Into<String>) -> TargetResolver {
        TargetResolver {
            kind: Kind::Provider {
                provider,
                name: name.into(),
            },
            tls_ca: None,
        }
    }

    /// A fixed server. Without [`TargetResolver::tls_ca`] the connection is plain TCP.
    pub fn url(url: UrlTarget) -> TargetResolver {
        TargetResolver {
            kind: Kind::Url(url),
            tls_ca: None,
        }
    }

    /// `mysql://...` is a URL, anything else a name for the provider; a name without a
    /// provider is bad input.
    pub fn from_arg(
        arg: &str,
        provider: Option<Arc<dyn Provider>>,
        env_password: Option<String>,
    ) -> Result<TargetResolver> {
        if arg.starts_with("mysql://") {
            return Ok(TargetResolver::url(UrlTarget::parse(arg, env_password)?));
        }
        if arg.contains("://") {
            return Err(Error::BadInput(format!(
                "unsupported target {arg:?}: use a cluster name, an instance id or mysql://user@host:port"
            )));
        }
        match provider {
            Some(p) => Ok(TargetResolver::provider(p, arg)),
            None => Err(Error::BadInput(format!(
                "{arg:?} is a name, but there is no provider to resolve it; pass a mysql:// URL or a lab (--dir)"
            ))),
        }
    }

    /// Verify the server's chain against this CA (PEM) on every connection, instead of the
    /// provider's bundle: a rotation to a CA the client does not trust shows up as failures.
    pub fn tls_ca(mut self, ca: Option<PathBuf>) -> TargetResolver {
        self.tls_ca = ca;
        self
    }

    /// The target as given, without any password.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Provider { name, .. } => name.clone(),
            Kind::Url(u) => u.redacted(),
        }
    }

    /// Where the target points now, as connection options.
    pub async fn resolve(&self, connect_timeout: Duration) -> Result<ConnectOptions> {
        let mut opts = match &self.kind {
            Kind::Url(u) => {
                let mut o = ConnectOptions::new(u.host.clone(), u.port, u.user.clone())
                    .password(u.password.clone());
                o.database = u.database.clone();
                o
            }
            Kind::Provider { provider, name } => {
                let ep = provider
                    .resolve(name)
                    .await
                    .map_err(|source| Error::UnknownTarget {
                        target: name.clone(),
                        source: Box::new(source),
                    })?;
                let creds = provider
                    .credentials()
                    .map_err(|source| Error::UnknownTarget {
                        target: name.clone(),
                        source: Box::new(source),
                    })?;
                let mut o = ConnectOptions::new(ep.host, ep.port, creds.app.user)
                    .password(creds.app.password);
                if let Some(ca) = creds.ca_bundle {
                    o = o.tls(TlsOptions {
                        ca_path: ca,
                        verify_identity: true,
                    });
                }
                o
            }
        };
        if let Some(ca) = &self.tls_ca {
            opts = opts.tls(TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            });
        }
        Ok(opts.connect_timeout(connect_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = UrlTarget::parse("mysql://app:s3cr@t@127.0.0.1:3306/app", None).unwrap();
        assert_eq!(u.user, "app");
        assert_eq!(u.password, "s3cr@t");
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 3306);
        assert_eq!(u.database.as_deref(), Some("app"));
        assert_eq!(u.redacted(), "mysql://app@127.0.0.1:3306/app");
        assert!(!format!("{u:?}").contains("s3cr"));

        let u = UrlTarget::parse("mysql://app@db.example:3307", Some("envpw".into())).unwrap();
        assert_eq!(u.password, "envpw");
        assert_eq!(u.database, None);
        // A password in the URL wins over the environment.
        let u = UrlTarget::parse("mysql://app:x@h:1/", Some("envpw".into())).unwrap();
        assert_eq!(u.password, "x");
        assert_eq!(u.database, None);

        for bad in [
            "postgres://a@h:1",
            "mysql://h:1",
            "mysql://@h:1",
            "mysql://a@h",
            "mysql://a@h:0",
            "mysql://a@h:99999",
            "mysql://a@:3306",
            "mysql://a@h:port",
        ] {
            assert!(
                matches!(UrlTarget::parse(bad, None), Err(Error::BadInput(_))),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn names_need_a_provider() {
        assert!(matches!(
            TargetResolver::from_arg("lab-1", None, None),
            Err(Error::BadInput(_))
        ));
        assert!(matches!(
            TargetResolver::from_arg("http://x", None, None),
            Err(Error::BadInput(_))
        ));
        let t = TargetResolver::from_arg("mysql://u:pw@h:3306", None, None).unwrap();
        assert_eq!(t.describe(), "mysql://u@h:3306");
    }
}
