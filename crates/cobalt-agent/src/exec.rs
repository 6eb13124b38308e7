//! Processes: splitting a command line, who a task runs as, spawning it in its own process
//! group, and killing that group.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User, geteuid};
use tokio::process::{Child, Command};

use crate::codes::KILLED_EXIT_CODE;

/// The unprivileged account non-elevated tasks run as when the agent is root.
const UNPRIVILEGED_USER: &str = "nobody";

/// Who the agent is, and so whom it can run tasks as.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity {
    /// The agent runs as root.
    pub is_root: bool,
    /// `(uid, gid)` of the unprivileged user, when the agent is root and the user exists.
    unprivileged: Option<(u32, u32)>,
}

impl Identity {
    /// Looks at the agent's own user and, if it is root, finds `nobody`.
    pub fn detect() -> Self {
        let is_root = geteuid().is_root();
        let unprivileged = if is_root {
            match User::from_name(UNPRIVILEGED_USER) {
                Ok(Some(user)) => Some((user.uid.as_raw(), user.gid.as_raw())),
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        "no '{UNPRIVILEGED_USER}' user: non-elevated tasks will run as root"
                    );
                    None
                }
            }
        } else {
            None
        };
        Self {
            is_root,
            unprivileged,
        }
    }

    /// The same agent, running every task as itself.
    pub fn without_switching(self) -> Self {
        Self {
            unprivileged: None,
            ..self
        }
    }

    /// The `(uid, gid)` to switch to for a run, or None to run as the agent's own user:
    /// elevated runs, and every run of an agent that is not root.
    pub fn run_as(&self, elevated: bool) -> Option<(u32, u32)> {
        if elevated { None } else { self.unprivileged }
    }
}

/// Splits a command line the way Azure Batch does on Linux: POSIX shell word rules (quotes,
/// backslashes), but no shell: no variables, globs, pipes or redirections.
pub(crate) fn split_command(line: &str) -> Result<Vec<String>, String> {
    let words =
        shell_words::split(line).map_err(|e| format!("the command line cannot be parsed: {e}"))?;
    if words.is_empty() {
        return Err("the command line is empty".into());
    }
    Ok(words)
}

/// What a process is started with.
pub(crate) struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables set on top of the agent's own environment, later ones winning.
    pub env: Vec<(OsString, OsString)>,
    /// Where stdout goes.
    pub stdout: File,
    /// Where stderr goes.
    pub stderr: File,
    /// `(uid, gid)` to run as, or None for the agent's user.
    pub user: Option<(u32, u32)>,
}

/// Starts the process as the leader of a new process group (its pid is the group id), so
/// that [`kill_group`] reaches every process it starts.
pub(crate) fn spawn(launch: Launch) -> io::Result<Child> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    // A relative program path with a directory (`bin/run.sh`, `./x`) is relative to the
    // working directory, whatever the platform's spawn does.
    let program = if program.contains('/') && !program.starts_with('/') {
        launch.cwd.join(program).into_os_string()
    } else {
        OsString::from(program)
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&launch.cwd)
        // The whole environment is given (the agent's own included), so std need not copy
        // the agent's on every spawn.
        .env_clear()
        .envs(launch.env)
        .stdin(Stdio::null())
        .stdout(launch.stdout)
        .stderr(launch.stderr)
        .process_group(0);
    if let Some((uid, gid)) = launch.user {
        // std drops supplementary groups (setgroups) when a root parent sets a uid.
        command.uid(uid).gid(gid);
    }
    command.spawn()
}

/// Whether a spawn error is the user's program being absent, not executable or not an
/// executable format (rather than the system failing).
pub(crate) fn is_program_error(error: &io::Error) -> bool {
    const ENOEXEC: i32 = 8;
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(ENOEXEC)
}

/// Sends SIGKILL to process group `pgid`. A group that is already gone is not an error.
pub(crate) fn kill_group(pgid: i32) {
    if pgid <= 0 {
        return;
    }
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, error = %e, "cannot kill process group"),
    }
}

/// The exit code of a finished process: its own, or 128 + the signal that ended it (so a
/// process killed with SIGKILL reports [`KILLED_EXIT_CODE`]).
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(KILLED_EXIT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_posix_shell_without_one() {
        let check = |line: &str, expected: &[&str]| {
            assert_eq!(split_command(line).unwrap(), expected, "{line:?}");
        };
        check("/bin/true", &["/bin/true"]);
        check("  echo   a  b ", &["echo", "a", "b"]);
        check(
            "/bin/bash -c 'echo $HOME; ls *'",
            &["/bin/bash", "-c", "echo $HOME; ls *"],
        );
        check(
            r#"printf "%s\n" "a b" c\ d"#,
            &["printf", r"%s\n", "a b", "c d"],
        );
        check("echo '' x", &["echo", "", "x"]);
        check("echo a|b > c", &["echo", "a|b", ">", "c"]);
        assert!(split_command("").is_err());
        assert!(split_command("   ").is_err());
        assert!(split_command("echo 'unterminated").is_err());
    }

    #[test]
    fn exit_codes_of_signals_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), KILLED_EXIT_CODE);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn program_errors_are_the_users() {
        assert!(is_program_error(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(is_program_error(&io::Error::from_raw_os_error(8)));
        assert!(!is_program_error(&io::Error::from_raw_os_error(12)));
    }
}
