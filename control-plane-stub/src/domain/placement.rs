//! Placement strategies and constraints as RunTask, CreateService and UpdateService take them
//! (botocore's PlacementStrategy {type, field} and PlacementConstraint {type, expression}),
//! validated into what the placement engine applies. Pure.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::query::{self, Expr};

/// ECS's limits.
pub const MAX_STRATEGIES: usize = 5;
pub const MAX_CONSTRAINTS: usize = 10;

/// The attribute ECS spreads services over by default.
pub const AVAILABILITY_ZONE: &str = "ecs.availability-zone";

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct PlacementError(pub String);

/// A strategy as the API carries it (and as a service stores and shows it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategySpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A constraint as the API carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Spread(SpreadOn),
    Binpack(Resource),
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadOn {
    /// `instanceId` or `host`.
    Instance,
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

#[derive(Debug, Clone)]
pub enum Constraint {
    DistinctInstance,
    MemberOf(Expr),
}

/// What placement applies to one request: its strategies (defaults filled in) and constraints.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub strategies: Vec<Strategy>,
    pub constraints: Vec<Constraint>,
}

impl Placement {
    /// Validates a request's strategies and constraints. Without strategies, ECS's defaults:
    /// a service spreads over availability zones, then instances; RunTask places at random.
    /// `task_definition` holds the definition's own placementConstraints (memberOf only, as
    /// ECS allows), which apply in addition to the request's.
    pub fn new(
        strategies: &[StrategySpec],
        constraints: &[ConstraintSpec],
        task_definition: &[ConstraintSpec],
        for_service: bool,
    ) -> Result<Placement, PlacementError> {
        let mut strategies = parse_strategies(strategies)?;
        if strategies.is_empty() {
            strategies = if for_service {
                vec![
                    Strategy::Spread(SpreadOn::Attribute(AVAILABILITY_ZONE.to_string())),
                    Strategy::Spread(SpreadOn::Instance),
                ]
            } else {
                vec![Strategy::Random]
            };
        }
        let mut all = parse_constraints(constraints, "placementConstraints")?;
        all.extend(parse_constraints(
            task_definition,
            "taskDefinition.placementConstraints",
        )?);
        Ok(Placement {
            strategies,
            constraints: all,
        })
    }
}

pub fn parse_strategies(specs: &[StrategySpec]) -> Result<Vec<Strategy>, PlacementError> {
    if specs.len() > MAX_STRATEGIES {
        return Err(PlacementError(format!(
            "placementStrategy: at most {MAX_STRATEGIES} strategies, {} given",
            specs.len()
        )));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = |m: String| PlacementError(format!("placementStrategy[{i}]: {m}"));
            let field = s.field.as_deref().map(str::trim).filter(|f| !f.is_empty());
            match s.kind.as_str() {
                "random" => Ok(Strategy::Random),
                "binpack" => match field {
                    Some(f) if f.eq_ignore_ascii_case("cpu") => {
                        Ok(Strategy::Binpack(Resource::Cpu))
                    }
                    Some(f) if f.eq_ignore_ascii_case("memory") => {
                        Ok(Strategy::Binpack(Resource::Memory))
                    }
                    other => Err(at(format!(
                        "binpack takes the field cpu or memory, not {}",
                        other.map_or("nothing".to_string(), |f| format!("{f:?}"))
                    ))),
                },
                "spread" => match field {
                    Some("instanceId" | "host") => Ok(Strategy::Spread(SpreadOn::Instance)),
                    Some(f) => match f.strip_prefix("attribute:") {
                        Some(name) if valid_attribute_name(name) => {
                            Ok(Strategy::Spread(SpreadOn::Attribute(name.to_string())))
                        }
                        _ => Err(at(format!(
                            "spread takes the field instanceId, host or attribute:NAME, not {f:?}"
                        ))),
                    },
                    None => Err(at(
                        "spread takes the field instanceId, host or attribute:NAME".to_string(),
                    )),
                },
                other => Err(at(format!(
                    "type {other:?} is not one of random, spread, binpack"
                ))),
            }
        })
        .collect()
}

pub fn parse_constraints(
    specs: &[ConstraintSpec],
    member: &str,
) -> Result<Vec<Constraint>, PlacementError> {
    if specs.len() > MAX_CONSTRAINTS {
        return Err(PlacementError(format!(
            "{member}: at most {MAX_CONSTRAINTS} constraints, {} given",
            specs.len()
        )));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = |m: String| PlacementError(format!("{member}[{i}]: {m}"));
            let expression = c.expression.as_deref().filter(|e| !e.trim().is_empty());
            match (c.kind.as_str(), expression) {
                ("distinctInstance", None) => Ok(Constraint::DistinctInstance),
                ("distinctInstance", Some(_)) => {
                    Err(at("distinctInstance takes no expression".to_string()))
                }
                ("memberOf", Some(e)) => query::parse(e)
                    .map(Constraint::MemberOf)
                    .map_err(|q| at(q.to_string())),
                ("memberOf", None) => Err(at("memberOf needs an expression".to_string())),
                (other, _) => Err(at(format!(
                    "type {other:?} is not one of distinctInstance, memberOf"
                ))),
            }
        })
        .collect()
}

/// ECS's rule for attribute names: 1–128 letters, digits, hyphens, underscores, slashes and
/// periods (`ecs.` names are ECS's own but may be named here).
pub fn valid_attribute_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: &str, field: Option<&str>) -> StrategySpec {
        StrategySpec {
            kind: kind.into(),
            field: field.map(Into::into),
        }
    }

    fn c(kind: &str, expression: Option<&str>) -> ConstraintSpec {
        ConstraintSpec {
            kind: kind.into(),
            expression: expression.map(Into::into),
        }
    }

    #[test]
    fn defaults_are_ecs_defaults() {
        let service = Placement::new(&[], &[], &[], true).unwrap();
        assert_eq!(
            service.strategies,
            vec![
                Strategy::Spread(SpreadOn::Attribute(AVAILABILITY_ZONE.into())),
                Strategy::Spread(SpreadOn::Instance)
            ]
        );
        let task = Placement::new(&[], &[], &[], false).unwrap();
        assert_eq!(task.strategies, vec![Strategy::Random]);
    }

    #[test]
    fn strategies_of_the_developer_guide_parse() {
        let parsed = parse_strategies(&[
            s("spread", Some("attribute:ecs.availability-zone")),
            s("spread", Some("instanceId")),
            s("spread", Some("host")),
            s("binpack", Some("memory")),
            s("random", None),
        ])
        .unwrap();
        assert_eq!(parsed[1], Strategy::Spread(SpreadOn::Instance));
        assert_eq!(parsed[2], Strategy::Spread(SpreadOn::Instance));
        assert_eq!(parsed[3], Strategy::Binpack(Resource::Memory));
        assert_eq!(parsed[4], Strategy::Random);
    }

    #[test]
    fn bad_strategies_and_constraints_say_which_and_why() {
        let cases = [
            (
                vec![s("binpack", Some("disk"))],
                "placementStrategy[0]: binpack takes",
            ),
            (vec![s("spread", None)], "spread takes"),
            (vec![s("spread", Some("attribute:"))], "spread takes"),
            (vec![s("pack", None)], "is not one of"),
            (vec![s("random", None); 6], "at most 5"),
        ];
        for (specs, needle) in cases {
            let e = parse_strategies(&specs).unwrap_err();
            assert!(e.0.contains(needle), "{e}");
        }
        let cases = [
            (vec![c("memberOf", None)], "needs an expression"),
            (
                vec![c("distinctInstance", Some("x"))],
                "takes no expression",
            ),
            (vec![c("memberOf", Some("colour == red"))], "position 1"),
            (vec![c("sameInstance", None)], "is not one of"),
            (vec![c("distinctInstance", None); 11], "at most 10"),
        ];
        for (specs, needle) in cases {
            let e = parse_constraints(&specs, "placementConstraints").unwrap_err();
            assert!(e.0.contains(needle), "{e}");
        }
    }

    #[test]
    fn attribute_names_follow_ecs_rules() {
        assert!(valid_attribute_name("ecs.availability-zone"));
        assert!(valid_attribute_name("team/stack_1"));
        assert!(!valid_attribute_name(""));
        assert!(!valid_attribute_name("has space"));
        assert!(!valid_attribute_name(&"a".repeat(129)));
    }
}
