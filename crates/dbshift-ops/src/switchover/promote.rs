//! The promotion of the new writer (events, semi-sync role, `read_only=OFF`, the proxy
//! released) and the operator's hooks.

use super::*;

impl Engine<'_> {
    pub(super) async fn promote(&mut self) -> StepResult<serde_json::Value> {
        // Never two writers: the old one must be read-only, or out of reach (fenced, and its
        // option file starts it read-only).
        match self.connect(&self.p.from).await {
            Ok(mut old) => {
                let ro = db(old.read_only().await)?;
                old.close().await;
                if !ro {
                    return Err(StepError::unsafe_(format!(
                        "{} is writable again (someone turned read_only off); refusing to make a \
                         second writer",
                        self.p.from
                    )));
                }
            }
            Err(e) => self.warnings.push(format!(
                "{} was unreachable at promotion ({e})",
                self.p.from
            )),
        }
        let mut new = self.connect(&self.p.to).await?;
        // Events replicated from the old writer arrived SLAVESIDE_DISABLED; their definers
        // are kept (a plain ALTER EVENT would make dbshift's user their definer).
        let enabled = db(new.enable_replicated_events().await)?;
        let scheduler_was_on = self
            .fence
            .as_ref()
            .is_some_and(|f| f.event_scheduler_before.eq_ignore_ascii_case("ON"));
        if scheduler_was_on && new.can_set_event_scheduler() {
            db(new.set_event_scheduler(true).await)?;
        } else if scheduler_was_on && !db(new.event_scheduler_on().await)? {
            self.warnings.push(format!(
                "the event scheduler was on at {} and is off at {}: turn it on in its parameter group",
                self.p.from, self.p.to
            ));
        }
        db(new.semi_sync_follow_role(true).await)?;
        self.set_writable(&mut new, &self.p.to, true).await?;
        new.close().await;
        crate::proxy_admin::resume_if_any(self.proxy.as_ref(), self.steps.observer()).await?;
        if let Some(started) = self.fence_started {
            self.write_gap = Some(started.elapsed());
        }
        self.steps.tell(Event::Promoted {
            writer: self.p.to.clone(),
        });
        Ok(serde_json::json!({ "events_enabled": enabled }))
    }

    pub(super) async fn hooks(&mut self) -> StepResult<serde_json::Value> {
        let old_ep = self.endpoint(&self.p.from).await?;
        let new_ep = self.endpoint(&self.p.to).await?;
        let mut ran = Vec::new();
        for hook in &self.p.hooks {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(hook)
                .arg("dbshift-hook")
                .arg(old_ep.to_string())
                .arg(new_ep.to_string())
                .env("DBSHIFT_CLUSTER", &self.p.cluster)
                .env("DBSHIFT_OLD_WRITER", &self.p.from)
                .env("DBSHIFT_NEW_WRITER", &self.p.to)
                .env("DBSHIFT_OLD_ENDPOINT", old_ep.to_string())
                .env("DBSHIFT_NEW_ENDPOINT", new_ep.to_string())
                .stdin(std::process::Stdio::null())
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => ran.push(hook.clone()),
                Ok(o) => self.warnings.push(format!(
                    "hook `{hook}` failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => self
                    .warnings
                    .push(format!("hook `{hook}` could not run: {e}")),
            }
        }
        Ok(serde_json::json!({ "ran": ran }))
    }
}
