//! `--user NAME`: drop root for good once the sockets are bound, so port 7 (or any port below
//! 1024) can be served without running as root.

use crate::sys::process::thread_count;
use crate::sys::user::{self, Passwd};

/// The account to switch to, resolved at start-up (so a typo is a usage error, exit 2, before
/// anything is bound or forked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct User(Passwd);

impl User {
    /// Looks `name` up in the password database.
    pub(super) fn lookup(name: &str) -> Result<User, String> {
        match user::user_by_name(name) {
            Ok(Some(passwd)) => Ok(User(passwd)),
            Ok(None) => Err(format!("invalid `--user`: no user named '{name}'")),
            Err(e) => Err(format!("invalid `--user`: cannot look up '{name}': {e}")),
        }
    }

    /// Switches this process to the user: supplementary groups cleared, then the user's
    /// primary group, then its uid. Must run before any thread is started.
    ///
    /// Without root this only succeeds if we already are that user (nothing to drop).
    pub(super) fn switch_to(&self) -> Result<(), String> {
        let Passwd { name, uid, gid } = &self.0;
        let euid = user::effective_uid();
        if euid != 0 {
            if euid == *uid {
                return Ok(());
            }
            return Err(format!(
                "--user {name} needs root to switch users (running as uid {euid})"
            ));
        }
        let threads = thread_count().unwrap_or(0);
        if threads != 1 {
            return Err(format!(
                "internal error: dropping privileges with {threads} threads running"
            ));
        }
        user::drop_privileges(*uid, *gid)
            .map_err(|e| format!("cannot switch to user {name} (uid {uid}, gid {gid}): {e}"))?;
        tracing::info!(user = %name, uid, gid, "dropped privileges");
        Ok(())
    }
}
