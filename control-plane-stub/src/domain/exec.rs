//! ExecuteCommand's rules, without I/O: which container of a task a command runs in, whether
//! it may, and the command's words.

use super::task::{ContainerStatus, Task, TaskStatus};

/// The longest command ExecuteCommand takes (ECS documents no limit; this keeps a session's
/// first message small).
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Why a command cannot run: ECS answers each with an InvalidParameterException.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecRefusal {
    #[error("Interactive is the only mode supported currently.")]
    NotInteractive,
    #[error("The execute command failed because execute command was not enabled when the task was run or the execute command agent isn't running. Wait and try again or run a new task with execute command enabled and try again.")]
    NotEnabled,
    #[error(
        "The execute command failed because the task is not running (its last status is {0})."
    )]
    TaskNotRunning(&'static str),
    #[error("Task has multiple containers. Container name is required: one of {0}.")]
    ContainerRequired(String),
    #[error("The container {name} does not exist in the task (it has {names}).")]
    NoSuchContainer { name: String, names: String },
    #[error("The execute command failed because the container {0} is not running.")]
    ContainerNotRunning(String),
    #[error("command: {0}")]
    BadCommand(String),
}

/// The container `container` names (or the task's only one), if a command may run in it now.
pub fn exec_container(
    task: &Task,
    container: Option<&str>,
    interactive: bool,
) -> Result<String, ExecRefusal> {
    if !interactive {
        return Err(ExecRefusal::NotInteractive);
    }
    if !task.enable_execute_command {
        return Err(ExecRefusal::NotEnabled);
    }
    if task.last_status != TaskStatus::Running || task.desired_status != TaskStatus::Running {
        return Err(ExecRefusal::TaskNotRunning(task.last_status.as_str()));
    }
    let names = || {
        task.containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match (
        container.filter(|c| !c.is_empty()),
        task.containers.as_slice(),
    ) {
        (None, [only]) => only,
        (None, _) => return Err(ExecRefusal::ContainerRequired(names())),
        (Some(name), all) => {
            all.iter()
                .find(|c| c.name == name)
                .ok_or_else(|| ExecRefusal::NoSuchContainer {
                    name: name.to_string(),
                    names: names(),
                })?
        }
    };
    if chosen.last_status != ContainerStatus::Running {
        return Err(ExecRefusal::ContainerNotRunning(chosen.name.clone()));
    }
    Ok(chosen.name.clone())
}

/// The command's words, split as a POSIX shell splits them (quotes and backslashes) but
/// without expanding anything: as the ECS exec agent runs it, with no shell unless the command
/// names one (`sh -c '…'`).
pub fn command_words(command: &str) -> Result<Vec<String>, ExecRefusal> {
    let bad = |m: &str| Err(ExecRefusal::BadCommand(m.to_string()));
    if command.len() > MAX_COMMAND_BYTES {
        return bad(&format!("longer than {MAX_COMMAND_BYTES} bytes"));
    }
    if command.contains('\0') {
        return bad("contains a NUL character");
    }
    match shlex::split(command) {
        None => bad("an unterminated quote or a trailing backslash"),
        Some(words) if words.is_empty() => bad("empty: name a program to run"),
        Some(words) => Ok(words),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::tests::sample_task;

    fn running(containers: &[(&str, ContainerStatus)]) -> Task {
        let mut t = sample_task();
        let template = t.containers[0].clone();
        t.containers = containers
            .iter()
            .map(|(name, status)| {
                let mut c = template.clone();
                c.name = name.to_string();
                c.last_status = *status;
                c
            })
            .collect();
        t.last_status = TaskStatus::Running;
        t.desired_status = TaskStatus::Running;
        t.enable_execute_command = true;
        t
    }

    #[test]
    fn the_only_container_is_chosen_and_a_named_one_must_exist_and_run() {
        let t = running(&[("app", ContainerStatus::Running)]);
        assert_eq!(exec_container(&t, None, true).unwrap(), "app");
        assert_eq!(exec_container(&t, Some(""), true).unwrap(), "app");
        let t = running(&[
            ("app", ContainerStatus::Running),
            ("init", ContainerStatus::Stopped),
        ]);
        assert_eq!(
            exec_container(&t, None, true),
            Err(ExecRefusal::ContainerRequired("app, init".into()))
        );
        assert_eq!(exec_container(&t, Some("app"), true).unwrap(), "app");
        assert_eq!(
            exec_container(&t, Some("init"), true),
            Err(ExecRefusal::ContainerNotRunning("init".into()))
        );
        assert!(matches!(
            exec_container(&t, Some("db"), true),
            Err(ExecRefusal::NoSuchContainer { .. })
        ));
    }

    #[test]
    fn only_interactive_commands_in_running_tasks_that_enabled_it() {
        let t = running(&[("app", ContainerStatus::Running)]);
        assert_eq!(
            exec_container(&t, None, false),
            Err(ExecRefusal::NotInteractive)
        );
        let mut off = t.clone();
        off.enable_execute_command = false;
        assert_eq!(
            exec_container(&off, None, true),
            Err(ExecRefusal::NotEnabled)
        );
        let mut pending = t.clone();
        pending.last_status = TaskStatus::Pending;
        assert_eq!(
            exec_container(&pending, None, true),
            Err(ExecRefusal::TaskNotRunning("PENDING"))
        );
        let mut stopping = t;
        stopping.desired_status = TaskStatus::Stopped;
        assert!(exec_container(&stopping, None, true).is_err());
    }

    #[test]
    fn commands_are_split_like_a_shell_without_expansion() {
        assert_eq!(command_words("ls -l /").unwrap(), ["ls", "-l", "/"]);
        assert_eq!(
            command_words(r#"sh -c 'echo "$HOME"; exit 3'"#).unwrap(),
            ["sh", "-c", r#"echo "$HOME"; exit 3"#]
        );
        assert_eq!(command_words(r"echo a\ b").unwrap(), ["echo", "a b"]);
        assert_eq!(
            command_words("echo $HOME *").unwrap(),
            ["echo", "$HOME", "*"]
        );
        for bad in ["", "   ", "echo 'open", "a\0b"] {
            assert!(command_words(bad).is_err(), "{bad:?}");
        }
        assert!(command_words(&"x".repeat(MAX_COMMAND_BYTES + 1)).is_err());
    }
}
