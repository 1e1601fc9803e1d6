//! healthCheck: ECS's limits and defaults, validation at registration, and what a stored definition says about its containers' health.

use super::*;

/// A container's healthCheck, validated, with ECS's defaults applied. The agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// As given: `["CMD", program, args...]` or `["CMD-SHELL", command]`.
    pub command: Vec<String>,
    /// Seconds.
    pub interval: i64,
    pub timeout: i64,
    pub retries: i64,
    pub start_period: i64,
}

/// ECS's limits and defaults for a healthCheck's interval, timeout, retries and startPeriod.
pub const HEALTH_INTERVAL: std::ops::RangeInclusive<i64> = 5..=300;
pub const DEFAULT_HEALTH_INTERVAL: i64 = 30;
pub const HEALTH_TIMEOUT: std::ops::RangeInclusive<i64> = 2..=60;
pub const DEFAULT_HEALTH_TIMEOUT: i64 = 5;
pub const HEALTH_RETRIES: std::ops::RangeInclusive<i64> = 1..=10;
pub const DEFAULT_HEALTH_RETRIES: i64 = 3;
pub const HEALTH_START_PERIOD: std::ops::RangeInclusive<i64> = 0..=300;
pub const DEFAULT_HEALTH_START_PERIOD: i64 = 0;

pub(super) const HEALTH_COMMAND_FORMS: &str =
    r#"["CMD", "program", "arg", ...], ["CMD-SHELL", "command"] or ["NONE"]"#;

/// What a task definition says about one of its containers' health: whether the container is
/// essential and whether it has a healthCheck (other than `["NONE"]`). RunTask's overrides
/// change neither, so the task definition a task was made from answers for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthDef {
    pub name: String,
    pub essential: bool,
    pub health_check: bool,
}

/// Whether a healthCheck command runs something: `CMD` or `CMD-SHELL` followed by at least one
/// string (so not `["NONE"]`).
pub(super) fn runs_a_check(command: &[String]) -> bool {
    match command.split_first() {
        Some((kind, rest)) => (kind == "CMD" || kind == "CMD-SHELL") && !rest.is_empty(),
        None => false,
    }
}

/// The [`HealthDef`] of each container of a stored definition. Lenient, unlike `parse`: a
/// definition registered under older rules is read as far as it goes.
pub fn health_defs(raw: &Value) -> Vec<HealthDef> {
    raw.get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let command: Vec<String> = c
                .get("healthCheck")
                .and_then(|h| h.get("command"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            Some(HealthDef {
                name: c.get("name")?.as_str()?.to_string(),
                essential: c.get("essential").and_then(Value::as_bool).unwrap_or(true),
                health_check: runs_a_check(&command),
            })
        })
        .collect()
}

/// A container's healthCheck, as ECS checks it at registration. None without one, with
/// `["NONE"]`, or when its command is not valid (reported).
pub(super) fn health_check(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
) -> Option<HealthCheck> {
    let h = match obj.get("healthCheck") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(h)) => h,
        Some(_) => {
            p.invalid(&f("healthCheck"), "must be an object");
            return None;
        }
    };
    let g = |key: &str| f(&format!("healthCheck.{key}"));
    let command = health_command(p, h, &g("command"));
    let number =
        |p: &mut Problems, key: &str, default: i64, range: std::ops::RangeInclusive<i64>| {
            let unit = if key == "retries" { "" } else { " seconds" };
            match h.get(key) {
                None | Some(Value::Null) => default,
                Some(v) => match v.as_i64() {
                    Some(n) if range.contains(&n) => n,
                    _ => {
                        p.invalid(
                            &g(key),
                            format!(
                                "{v} must be between {} and {}{unit}",
                                range.start(),
                                range.end()
                            ),
                        );
                        default
                    }
                },
            }
        };
    let interval = number(p, "interval", DEFAULT_HEALTH_INTERVAL, HEALTH_INTERVAL);
    let timeout = number(p, "timeout", DEFAULT_HEALTH_TIMEOUT, HEALTH_TIMEOUT);
    let retries = number(p, "retries", DEFAULT_HEALTH_RETRIES, HEALTH_RETRIES);
    let start_period = number(
        p,
        "startPeriod",
        DEFAULT_HEALTH_START_PERIOD,
        HEALTH_START_PERIOD,
    );
    Some(HealthCheck {
        command: command?,
        interval,
        timeout,
        retries,
        start_period,
    })
}

/// A healthCheck's command: Some when it runs a check; None for `["NONE"]`, or when it is not
/// valid (reported).
pub(super) fn health_command(
    p: &mut Problems,
    h: &Map<String, Value>,
    path: &str,
) -> Option<Vec<String>> {
    let command = match h.get("command") {
        None | Some(Value::Null) => {
            p.client(path, format!("required: {HEALTH_COMMAND_FORMS}"));
            return None;
        }
        Some(_) => opt_string_list(p, h, "command", path)?,
    };
    let Some((kind, rest)) = command.split_first() else {
        p.client(path, format!("empty: it must be {HEALTH_COMMAND_FORMS}"));
        return None;
    };
    let program = rest.first().is_some_and(|a| !a.trim().is_empty());
    let shell_command = rest.iter().any(|a| !a.trim().is_empty());
    let runs = match kind.as_str() {
        "NONE" if rest.is_empty() => false,
        "NONE" => {
            p.invalid(path, "[\"NONE\"] takes nothing after NONE");
            false
        }
        "CMD" if !program => {
            p.client(path, CMD_EXAMPLE);
            false
        }
        "CMD-SHELL" if !shell_command => {
            p.client(path, CMD_SHELL_EXAMPLE);
            false
        }
        "CMD" | "CMD-SHELL" => true,
        other => {
            p.invalid(
                path,
                format!(
                    "{other:?} is not CMD, CMD-SHELL or NONE: the command must be {HEALTH_COMMAND_FORMS}"
                ),
            );
            false
        }
    };
    runs.then_some(command)
}

pub(super) const CMD_EXAMPLE: &str =
    r#"CMD needs the program to run after it, e.g. ["CMD", "/bin/check", "--quick"]"#;
pub(super) const CMD_SHELL_EXAMPLE: &str = r#"CMD-SHELL needs the shell command after it, e.g. ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]"#;
