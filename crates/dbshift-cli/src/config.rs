//! The configuration file: flags first, then `DBSHIFT_*` environment variables, then this
//! file. Each key of the file stands for one environment variable and is applied only where
//! that variable is not set, before the flags are parsed; so a flag always wins, then the
//! environment, then the file.
//!
//! Where: `--config FILE` (or `DBSHIFT_CONFIG`); else `./dbshift.toml` if it exists; else
//! `$XDG_CONFIG_HOME/dbshift/config.toml` (`~/.config/dbshift/config.toml`) if it exists.
//! Secrets do not belong here: passwords come from the provider or the environment.

use std::path::{Path, PathBuf};

/// The keys a configuration file may hold, and the variables they stand for.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "dir",
        "DBSHIFT_LAB_DIR",
        "the local lab's directory (--dir)",
    ),
    ("output", "DBSHIFT_OUTPUT", "table or json (--output)"),
    (
        "provider",
        "DBSHIFT_PROVIDER",
        "local, aws or self-managed (--provider)",
    ),
    (
        "fleet",
        "DBSHIFT_FLEET",
        "the self-managed provider's fleet file (--fleet)",
    ),
    ("region", "DBSHIFT_REGION", "the AWS region (--region)"),
    ("profile", "DBSHIFT_PROFILE", "the AWS profile (--profile)"),
    (
        "state",
        "DBSHIFT_STATE",
        "where the cluster locks live: local, or etcd://host:port[,...][/prefix] (--state)",
    ),
    (
        "log",
        "DBSHIFT_LOG",
        "log filter, e.g. info or dbshift_ops=debug",
    ),
];

/// The file to read, if any: `--config` on the command line, `DBSHIFT_CONFIG`, or a default
/// location that exists.
pub fn locate(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    if let Ok(v) = std::env::var("DBSHIFT_CONFIG") {
        return Some(PathBuf::from(v));
    }
    let local = PathBuf::from("dbshift.toml");
    if local.is_file() {
        return Some(local);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let user = base.join("dbshift").join("config.toml");
    user.is_file().then_some(user)
}

/// The variables the file at `path` sets: (variable, value), for every key of the file.
pub fn read(path: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("the configuration file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("the configuration file {}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some((_, var, _)) = KEYS.iter().find(|(k, _, _)| *k == key) else {
            return Err(format!(
                "unknown key {key:?}; known: {}",
                KEYS.iter()
                    .map(|(k, _, what)| format!("{k} ({what})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let value = match value {
            toml::Value::String(s) => s,
            other => {
                return Err(format!(
                    "{key} must be a string, not a {}",
                    other.type_str()
                ))
            }
        };
        out.push((*var, value));
    }
    Ok(out)
}

/// Apply the file's values to the variables that are not set. Called before any thread
/// starts.
pub fn apply(vars: &[(&'static str, String)]) {
    for (var, value) in vars {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_variables_and_unknown_keys_are_refused() {
        let vars = parse("dir = \"/srv/lab\"\noutput = \"json\"\n").unwrap();
        assert_eq!(
            vars,
            vec![
                ("DBSHIFT_LAB_DIR", "/srv/lab".to_string()),
                ("DBSHIFT_OUTPUT", "json".to_string())
            ]
        );
        let err = parse("password = \"x\"\n").unwrap_err();
        assert!(err.contains("unknown key \"password\""), "{err}");
        assert!(err.contains("dir (the local lab's directory"), "{err}");
        assert!(parse("dir = 3\n").unwrap_err().contains("must be a string"));
        assert!(parse("dir = \n").is_err());
    }

    #[test]
    fn the_command_line_names_the_file_first() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            locate(&args(&["dbshift", "--config", "/a.toml", "inventory"])),
            Some(PathBuf::from("/a.toml"))
        );
        assert_eq!(
            locate(&args(&["dbshift", "inventory", "--config=/b.toml"])),
            Some(PathBuf::from("/b.toml"))
        );
    }
}
