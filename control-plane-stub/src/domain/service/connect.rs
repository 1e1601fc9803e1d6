//! A service's serviceConnectConfiguration as ECS shapes it: kept with the namespace it joins
//! (its own, else its cluster's serviceConnectDefaults), which ListServicesByNamespace lists
//! services by. Pure. Names and virtual addresses for its endpoints come with service
//! discovery; until then the configuration is stored and shown.

use serde_json::Value;

use crate::domain::ids::namespace_name;

/// Checks `raw` and returns it as kept: with `namespace` resolved to a namespace name.
pub fn check(raw: &Value, cluster_default: Option<&str>) -> Result<Value, String> {
    let Some(m) = raw.as_object() else {
        return Err("serviceConnectConfiguration: must be an object".into());
    };
    let Some(enabled) = m.get("enabled").and_then(Value::as_bool) else {
        return Err("serviceConnectConfiguration.enabled: required, true or false".into());
    };
    let own = match m.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Some(namespace_name(s)),
        Some(_) => {
            return Err(
                "serviceConnectConfiguration.namespace: a namespace name or ARN of 1 to 1024 characters"
                    .into(),
            )
        }
    };
    if m.get("services").is_some_and(|s| !s.is_array()) {
        return Err("serviceConnectConfiguration.services: must be a list".into());
    }
    let mut kept = m.clone();
    match own.or(cluster_default) {
        Some(ns) => {
            kept.insert("namespace".into(), Value::String(ns.to_string()));
        }
        None if enabled => {
            return Err("serviceConnectConfiguration.namespace: required, as the cluster has no serviceConnectDefaults namespace".into())
        }
        None => {}
    }
    Ok(Value::Object(kept))
}

/// The namespace a service with configuration `kept` is in, when Service Connect is enabled.
pub fn namespace(kept: &Value) -> Option<&str> {
    if kept["enabled"] == true {
        kept["namespace"].as_str()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_namespace_is_the_services_own_else_the_clusters() {
        let own = check(&json!({"enabled": true, "namespace": "arn:aws:servicediscovery:us-east-1:1:namespace/lab"}), Some("edge")).unwrap();
        assert_eq!(namespace(&own), Some("lab"));
        let default = check(&json!({"enabled": true}), Some("edge")).unwrap();
        assert_eq!(namespace(&default), Some("edge"));
        let off = check(&json!({"enabled": false}), None).unwrap();
        assert_eq!(namespace(&off), None);
    }

    #[test]
    fn enabled_without_any_namespace_or_a_bad_shape_is_refused() {
        assert!(check(&json!({"enabled": true}), None)
            .unwrap_err()
            .contains("serviceConnectDefaults"));
        assert!(check(&json!({"namespace": "lab"}), None)
            .unwrap_err()
            .contains("enabled"));
        assert!(check(&json!({"enabled": true, "namespace": 7}), None).is_err());
        assert!(check(
            &json!({"enabled": true, "namespace": "a", "services": {}}),
            None
        )
        .is_err());
        assert!(check(&json!([1]), None).is_err());
    }
}
