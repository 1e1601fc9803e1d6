//! Registry logins held by berth-cp for ECS's `repositoryCredentials`: a container definition's
//! `credentialsParameter` names a secret (by ARN or name), and the control plane puts its login
//! into the ContainerSpec it sends the agent. Pure.
//!
//! The password never leaves berth-cp except in that ContainerSpec: no API answer, log line or
//! Debug output shows it ([`Login`]'s Debug redacts it).

use serde_json::Value;

/// The most characters in a secret's name (as Secrets Manager's 512, narrowed).
pub const MAX_NAME_LEN: usize = 128;

/// A registry login. Debug shows the username only.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the API shows of a secret: never its login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub arn: String,
    pub created_at_ms: i64,
}

/// Names as Secrets Manager allows them: 1-128 of letters, digits and `/_+=.@-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name: {name:?} must be 1-{MAX_NAME_LEN} letters, digits or any of / _ + = . @ -"
        ))
    }
}

/// A PUT body: `{"username": "...", "password": "..."}`, both non-empty strings. The problems
/// never quote a value (it may be the password).
pub fn parse_login(body: &Value) -> Result<Login, Vec<String>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![
            "request: must be a JSON object {\"username\", \"password\"}".into(),
        ]);
    };
    let mut problems = Vec::new();
    let mut field = |key: &str| match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => {
            problems.push(format!("{key}: required"));
            String::new()
        }
        Some(Value::String(_)) => {
            problems.push(format!("{key}: must not be empty"));
            String::new()
        }
        Some(_) => {
            problems.push(format!("{key}: must be a string"));
            String::new()
        }
    };
    let username = field("username");
    let password = field("password");
    let mut unknown: Vec<&String> = obj
        .keys()
        .filter(|k| *k != "username" && *k != "password")
        .collect();
    unknown.sort();
    for k in unknown {
        problems.push(format!(
            "{k:?}: unknown field (a secret has username and password)"
        ));
    }
    if problems.is_empty() {
        Ok(Login { username, password })
    } else {
        Err(problems)
    }
}

/// The `repositoryCredentials.credentialsParameter` of a container definition, when it has one
/// (as registration validated it: a non-empty string).
pub fn credentials_parameter(container_def: &Value) -> Option<&str> {
    container_def
        .get("repositoryCredentials")?
        .get("credentialsParameter")?
        .as_str()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for ok in ["a", "team/registry", "x_+=.@-9", &"n".repeat(128)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "has space", "ünï", "a:b", &"n".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logins_are_checked_without_quoting_values() {
        assert_eq!(
            parse_login(&json!({"username": "u", "password": "p"})),
            Ok(Login {
                username: "u".into(),
                password: "p".into()
            })
        );
        let problems =
            parse_login(&json!({"username": "", "password": 7, "pasword": "hunter2"})).unwrap_err();
        assert_eq!(
            problems,
            [
                "username: must not be empty",
                "password: must be a string",
                "\"pasword\": unknown field (a secret has username and password)"
            ]
        );
        assert_eq!(
            parse_login(&json!({})).unwrap_err(),
            ["username: required", "password: required"]
        );
        assert!(parse_login(&json!("x")).is_err());
    }

    #[test]
    fn debug_redacts_the_password() {
        let l = Login {
            username: "robot".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{l:?} {l:#?}");
        assert!(
            shown.contains("robot") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn the_parameter_of_a_container() {
        assert_eq!(
            credentials_parameter(
                &json!({"repositoryCredentials": {"credentialsParameter": "reg"}})
            ),
            Some("reg")
        );
        assert_eq!(credentials_parameter(&json!({"name": "app"})), None);
    }
}
