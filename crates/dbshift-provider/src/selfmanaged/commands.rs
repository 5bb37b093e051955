//! The fleet file's command templates (`restart`, `stop`, `start`): `{host}`, `{port}` and
//! `{id}` filled in (each shell-quoted), run by `sh -c` with a deadline, the output kept for
//! the error. A command that runs past its deadline is killed with its process group. The
//! template itself may hold a secret only through the environment: it is printed in errors.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::model::Endpoint;

/// How much of a command's output an error keeps (the end of it, where the reason usually is).
const OUTPUT_KEPT: usize = 2000;

/// `template` with `{host}`, `{port}` and `{id}` replaced by the shell-quoted values.
pub fn fill(template: &str, id: &str, ep: &Endpoint) -> String {
    fill_with(template, id, ep, &[])
}

/// As [`fill`], with more `{key}`s (`{ca}`, `{ca_file}`, `{bundle}`), in one pass: a value
/// is never read again for a key.
pub fn fill_with(template: &str, id: &str, ep: &Endpoint, more: &[(&str, &str)]) -> String {
    let port = ep.port.to_string();
    let mut values: Vec<(&str, &str)> = vec![("{host}", &ep.host), ("{port}", &port), ("{id}", id)];
    values.extend_from_slice(more);
    let mut out = String::new();
    let mut rest = template;
    'outer: while !rest.is_empty() {
        for (key, value) in &values {
            if let Some(after) = rest.strip_prefix(key) {
                out.push_str(&shell_quote(value));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A value as one shell word: in single quotes, with embedded quotes closed and escaped.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:@/".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r#"'\''"#))
}

/// Run `command` (already filled) for `instance` with `sh -c`, at most `timeout`; `key` is the
/// fleet file's key the command comes from, for the error.
pub async fn run(key: &str, instance: &str, command: &str, timeout: Duration) -> Result<()> {
    output(key, instance, command, timeout).await.map(|_| ())
}

/// As [`run`], giving what the command printed on its standard output.
pub async fn output(key: &str, instance: &str, command: &str, timeout: Duration) -> Result<String> {
    tracing::info!(instance, key, command, "running the fleet file's command");
    let fail = |message: String| Error::Process {
        instance: instance.to_string(),
        message,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("the {key} command `{command}` did not start: {e}")))?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let mut output = Vec::new();
    let mut errors = Vec::new();
    let waited = tokio::time::timeout(timeout, async {
        let (a, b, status) = tokio::join!(
            out.read_to_end(&mut output),
            err.read_to_end(&mut errors),
            child.wait()
        );
        let _ = (a, b);
        status
    })
    .await;
    let stdout = String::from_utf8_lossy(&output).into_owned();
    output.extend_from_slice(&errors);
    let text = String::from_utf8_lossy(&output);
    let tail = text.trim();
    let tail = &tail[tail.len().saturating_sub(OUTPUT_KEPT)..];
    let tail = if tail.is_empty() {
        "no output".to_string()
    } else {
        format!("output: {tail}")
    };
    match waited {
        Err(_) => {
            if let Some(pid) = child.id() {
                // SAFETY: signalling the process group this function started.
                unsafe {
                    libc::killpg(pid as i32, libc::SIGKILL);
                }
            }
            let _ = child.wait().await;
            Err(fail(format!(
                "the {key} command `{command}` ran past its timeout of {timeout:?} and was \
                 killed ({tail}); fix it or raise commands.timeout_seconds in the fleet file"
            )))
        }
        Ok(Err(e)) => Err(fail(format!("the {key} command `{command}`: {e}"))),
        Ok(Ok(status)) if status.success() => {
            tracing::info!(instance, key, "the fleet file's command succeeded");
            Ok(stdout)
        }
        Ok(Ok(status)) => Err(fail(format!(
            "the {key} command `{command}` failed ({status}; {tail})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint {
            host: "db 1".into(),
            port: 3306,
        }
    }

    #[test]
    fn templates_are_filled_with_quoted_values() {
        assert_eq!(
            fill("ssh {host} restart {id} on {port}", "it's", &ep()),
            r#"ssh 'db 1' restart 'it'\''s' on 3306"#
        );
        assert_eq!(
            fill(
                "{host}",
                "x",
                &Endpoint {
                    host: "10.0.0.1".into(),
                    port: 1
                }
            ),
            "10.0.0.1"
        );
    }

    #[tokio::test]
    async fn a_failing_or_hanging_command_says_so_with_its_output() {
        run("restart", "db1", "true", Duration::from_secs(5))
            .await
            .unwrap();
        let e = run(
            "restart",
            "db1",
            "echo nope >&2; exit 3",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("db1") && e.contains("nope") && e.contains("restart"),
            "{e}"
        );
        let started = std::time::Instant::now();
        let e = run("stop", "db1", "sleep 30", Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
