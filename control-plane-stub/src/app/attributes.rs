//! PutAttributes, DeleteAttributes, ListAttributes: custom attributes on container instances
//! (ECS's only attribute target), with ECS's rules and its limit of 10 per instance. An agent's
//! own attributes (ecs.*, berth.*) are listed but never changed here.

use std::sync::Arc;

use super::clusters::Clusters;
use super::CpError;
use crate::domain::ids;
use crate::domain::instance::{check_custom_attribute, Instance, MAX_CUSTOM_ATTRIBUTES};
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

    fn check_count(attributes: &[AttributeInput]) -> Result<(), CpError> {
        if attributes.is_empty() || attributes.len() > MAX_PER_CALL {
            return Err(CpError::InvalidParameter(format!(
                "attributes: 1 to {MAX_PER_CALL} attributes per call, {} given",
                attributes.len()
            )));
        }
        Ok(())
    }

    /// Sets each attribute on its instance (replacing a value already there). All are checked
    /// before any is written.
    pub fn put(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
    ) -> Result<Vec<Attribute>, CpError> {
        self.clusters.require(cluster)?;
        Self::check_count(attributes)?;
        let mut targets = Vec::new();
        for a in attributes {
            check_custom_attribute(&a.name, a.value.as_deref())
                .map_err(CpError::InvalidParameter)?;
            targets.push(self.target(cluster, a)?);
        }
        let mut out = Vec::new();
        for (a, instance) in attributes.iter().zip(&targets) {
            let value = a.value.clone().unwrap_or_default();
            let changed = self.store.modify_instance_state(&instance.id, &mut |state| {
                let full = state.attributes.len() >= MAX_CUSTOM_ATTRIBUTES;
                match state.attributes.iter_mut().find(|(n, _)| *n == a.name) {
                    Some(existing) => existing.1 = value.clone(),
                    None if full => {
                        return Err(format!(
                            "container instance {} already has {MAX_CUSTOM_ATTRIBUTES} custom attributes",
                            instance.id
                        ))
                    }
                    None => state.attributes.push((a.name.clone(), value.clone())),
                }
                Ok(())
            })?;
            match changed {
                None => return Err(CpError::TargetNotFound(instance.id.clone())),
                Some(Err(limit)) => return Err(CpError::AttributeLimitExceeded(limit)),
                Some(Ok(_)) => {}
            }
            out.push(Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                instance_id: instance.id.clone(),
                cluster: cluster.to_string(),
            });
        }
        Ok(out)
    }

    /// Removes each attribute from its instance; an attribute that is not there is not an error
    /// (as ECS). Returns what the request named.
    pub fn delete(
        &self,
        cluster: &str,
        attributes: &[AttributeInput],
    ) -> Result<Vec<Attribute>, CpError> {
        self.clusters.require(cluster)?;
        Self::check_count(attributes)?;
        let mut targets = Vec::new();
        for a in attributes {
            check_custom_attribute(&a.name, None).map_err(CpError::InvalidParameter)?;
            targets.push(self.target(cluster, a)?);
        }
        let mut out = Vec::new();
        for (a, instance) in attributes.iter().zip(&targets) {
            let mut removed = None;
            self.store
                .modify_instance_state(&instance.id, &mut |state| {
                    if let Some(i) = state.attributes.iter().position(|(n, _)| *n == a.name) {
                        removed = Some(state.attributes.remove(i).1);
                    }
                    Ok(())
                })?;
            out.push(Attribute {
                name: a.name.clone(),
                value: removed.or_else(|| a.value.clone()),
                instance_id: instance.id.clone(),
                cluster: cluster.to_string(),
            });
        }
        Ok(out)
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
