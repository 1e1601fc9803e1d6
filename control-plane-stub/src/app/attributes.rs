//! PutAttributes, DeleteAttributes, ListAttributes: custom attributes on container instances
//! (ECS's only attribute target), with ECS's rules and its limit of 10 per instance. An agent's
//! own attributes (ecs.*, berth.*) are listed but never changed here.

use std::sync::Arc;

use super::clusters::Clusters;
use super::CpError;
use crate::domain::ids;
use crate::domain::instance::{
    check_custom_attribute, Instance, InstanceState, MAX_CUSTOM_ATTRIBUTES,
};
use crate::state::Store;

/// ECS's only target type.
pub const CONTAINER_INSTANCE: &str = "container-instance";
/// At most this many attributes in one PutAttributes or DeleteAttributes.
pub const MAX_PER_CALL: usize = 10;

/// One attribute of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeInput {
    pub name: String,
    pub value: Option<String>,
    pub target_type: Option<String>,
    /// A container instance's id or ARN.
    pub target_id: Option<String>,
}

/// An attribute on an instance, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
    pub instance_id: String,
    pub cluster: String,
}

#[derive(Clone)]
pub struct Attributes {
    store: Arc<dyn Store>,
    clusters: Clusters,
}

impl Attributes {
    pub fn new(store: Arc<dyn Store>, clusters: Clusters) -> Self {
        Self { store, clusters }
    }

    /// The instance an attribute targets, in `cluster`.
    fn target(&self, cluster: &str, a: &AttributeInput) -> Result<Instance, CpError> {
        if let Some(t) = a
            .target_type
            .as_deref()
            .filter(|t| *t != CONTAINER_INSTANCE)
        {
            return Err(CpError::InvalidParameter(format!(
                "targetType {t:?}: attributes can be put on {CONTAINER_INSTANCE} only"
            )));
        }
        let Some(reference) = a.target_id.as_deref().filter(|t| !t.is_empty()) else {
            return Err(CpError::InvalidParameter(format!(
                "attribute {}: targetId (a container instance id or ARN) is required",
                a.name
            )));
        };
        self.store
            .get_instance(ids::resource_id(reference))?
            .filter(|i| i.cluster == cluster)
            .ok_or_else(|| CpError::TargetNotFound(reference.to_string()))
    }

    /// Checks a request (its size, every name and, for `put`, every value) and finds each
    /// attribute's instance; nothing is written before all of it holds.
    fn targets(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
        with_values: bool,
    ) -> Result<Vec<Instance>, CpError> {
        self.clusters.require(cluster)?;
        if attributes.is_empty() || attributes.len() > MAX_PER_CALL {
            return Err(CpError::InvalidParameter(format!(
                "attributes: 1 to {MAX_PER_CALL} attributes per call, {} given",
                attributes.len()
            )));
        }
        attributes
            .iter()
            .map(|a| {
                let value = a.value.as_deref().filter(|_| with_values);
                check_custom_attribute(&a.name, value).map_err(CpError::InvalidParameter)?;
                self.target(cluster, a)
            })
            .collect()
    }

    /// Changes the instances `attributes` target in one transaction: `change` edits one
    /// instance's state for one attribute, or refuses, and then none is changed.
    fn change_all(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
        with_values: bool,
        change: &mut dyn FnMut(&AttributeInput, &mut InstanceState) -> Result<(), String>,
    ) -> Result<Vec<Attribute>, CpError> {
        let targets = self.targets(cluster, attributes, with_values)?;
        let mut ids: Vec<&str> = targets.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let changed = self.store.modify_instance_states(&ids, &mut |id, state| {
            let mut mine = attributes.iter().zip(&targets).filter(|(_, i)| i.id == id);
            mine.try_for_each(|(a, _)| change(a, state))
        })?;
        match changed {
            None => return Err(CpError::TargetNotFound(ids.join(", "))),
            Some(Err(limit)) => return Err(CpError::AttributeLimitExceeded(limit)),
            Some(Ok(_)) => {}
        }
        Ok(attributes
            .iter()
            .zip(&targets)
            .map(|(a, instance)| Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                instance_id: instance.id.clone(),
                cluster: cluster.to_string(),
            })
            .collect())
    }

    /// Sets each attribute on its instance (replacing a value already there). All or none are
    /// written: a request that would take an instance over its limit changes nothing.
    pub fn put(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
    ) -> Result<Vec<Attribute>, CpError> {
        self.change_all(cluster, attributes, true, &mut |a, state| {
            let value = a.value.clone().unwrap_or_default();
            let full = state.attributes.len() >= MAX_CUSTOM_ATTRIBUTES;
            match state.attributes.iter_mut().find(|(n, _)| *n == a.name) {
                Some(existing) => existing.1 = value,
                None if full => {
                    return Err(format!(
                        "container instance {} would have more than {MAX_CUSTOM_ATTRIBUTES} custom attributes",
                        a.target_id.as_deref().map(ids::resource_id).unwrap_or_default()
                    ))
                }
                None => state.attributes.push((a.name.clone(), value)),
            }
            Ok(())
        })
    }

    /// Removes each attribute from its instance; an attribute that is not there is not an error
    /// (as ECS). Returns what the request named.
    pub fn delete(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
    ) -> Result<Vec<Attribute>, CpError> {
        self.change_all(cluster, attributes, false, &mut |a, state| {
            state.attributes.retain(|(n, _)| *n != a.name);
            Ok(())
        })
    }

    /// Every attribute of the cluster's instances (the agents' and the custom ones), optionally
    /// only those of one name, and of one value.
    pub fn list(
        &self,
        cluster: &str,
        target_type: &str,
        name: Option<&str>,
        value: Option<&str>,
    ) -> Result<Vec<Attribute>, CpError> {
        self.clusters.require(cluster)?;
        if target_type != CONTAINER_INSTANCE {
            return Err(CpError::InvalidParameter(format!(
                "targetType {target_type:?}: attributes are on {CONTAINER_INSTANCE} only"
            )));
        }
        if value.is_some() && name.is_none() {
            return Err(CpError::InvalidParameter(
                "attributeValue needs attributeName".into(),
            ));
        }
        let mut out = Vec::new();
        for i in self.store.list_instances(cluster)? {
            for (n, v) in i.attributes() {
                if name.is_some_and(|w| w != n) || value.is_some_and(|w| w != v) {
                    continue;
                }
                out.push(Attribute {
                    name: n,
                    value: (!v.is_empty()).then_some(v),
                    instance_id: i.id.clone(),
                    cluster: cluster.to_string(),
                });
            }
        }
        Ok(out)
    }
}
