//! The parsed form of a cluster query, how it prints (canonically), and how it is evaluated.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use thiserror::Error;

use super::values::{compare, compare_versions};

/// ECS's limit on a memberOf expression.
pub const MAX_EXPRESSION_CHARS: usize = 2000;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid expression at position {position}: {message}")]
pub struct QueryError {
    /// 1-based, in characters.
    pub position: usize,
    pub message: String,
}

/// What an expression can ask of a container instance.
pub trait Facts {
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    fn attribute(&self, name: &str) -> Option<&str>;
    fn ec2_instance_id(&self) -> Option<&str>;
    fn registered_at_ms(&self) -> i64;
    fn running_tasks_count(&self) -> u64;
    /// Whether any task on the instance (not STOPPED) has a group for which `pred` holds.
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool;
}

#[derive(Debug, Clone)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cond(Condition),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub subject: Subject,
    pub op: Op,
    pub(super) arg: Arg,
}

#[derive(Debug, Clone)]
pub(super) enum Arg {
    None,
    One(String),
    List(Vec<String>),
    Pattern(Regex),
    /// registeredAt's argument; `day` when only a date was given (compared by day).
    Time {
        text: String,
        ms: i64,
        day: bool,
    },
    Count(u64),
}

impl Op {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::In => "in",
            Op::NotIn => "!in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }

    pub(super) fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "equals" => Op::Eq,
            "not_equals" => Op::Ne,
            "greater_than" => Op::Gt,
            "greater_than_equal" => Op::Ge,
            "less_than" => Op::Lt,
            "less_than_equal" => Op::Le,
            "exists" => Op::Exists,
            "not_exists" => Op::NotExists,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "matches" => Op::Matches,
            "not_matches" => Op::NotMatches,
            _ => return None,
        })
    }

    /// The negative operators are the negation of a positive one: an absent value is `!=`
    /// anything, `!in` any list, and so on.
    fn positive(self) -> (Op, bool) {
        match self {
            Op::Ne => (Op::Eq, true),
            Op::NotExists => (Op::Exists, true),
            Op::NotIn => (Op::In, true),
            Op::NotMatches => (Op::Matches, true),
            op => (op, false),
        }
    }
}

impl Subject {
    pub(super) fn parse(word: &str) -> Option<Subject> {
        Some(match word {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            _ => {
                let name = word.strip_prefix("attribute:")?;
                return (!name.is_empty()).then(|| Subject::Attribute(name.to_string()));
            }
        })
    }

    /// The operators the developer guide lists for each subject (attributes take them all).
    pub(super) fn allows(&self, op: Op) -> bool {
        use Op::*;
        match self {
            Subject::Attribute(_) => true,
            Subject::AgentConnected | Subject::Ec2InstanceId => {
                matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches)
            }
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
            }
            Subject::TaskGroup => !matches!(op, Gt | Ge | Lt | Le),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(n) => write!(f, "attribute:{n}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

/// Quotes a value unless it reads back as the same bare word.
fn write_value(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let bare = !v.is_empty()
        && !v.starts_with(['[', '\'', '"', '('])
        && !v.contains(|c: char| c.is_whitespace() || ",)]".contains(c))
        && !v.contains("&&")
        && !v.contains("||");
    if bare {
        f.write_str(v)
    } else {
        write!(f, "'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

impl fmt::Display for Expr {
    /// The canonical form: fully parenthesised, symbolic operators. Parsing it gives back the
    /// same expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
            Expr::Not(e) => write!(f, "not({e})"),
            Expr::Cond(c) => {
                write!(f, "{} {}", c.subject, c.op.symbol())?;
                match &c.arg {
                    Arg::None => Ok(()),
                    Arg::One(v) => {
                        f.write_str(" ")?;
                        write_value(f, v)
                    }
                    Arg::Pattern(r) => {
                        f.write_str(" ")?;
                        let p = r.as_str();
                        write_value(f, &p[4..p.len() - 2])
                    }
                    Arg::Time { text, .. } => write!(f, " {text}"),
                    Arg::Count(n) => write!(f, " {n}"),
                    Arg::List(items) => {
                        f.write_str(" [")?;
                        for (i, v) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            write_value(f, v)?;
                        }
                        f.write_str("]")
                    }
                }
            }
        }
    }
}

fn ordered(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        _ => false,
    }
}

impl Condition {
    /// A string value against a positive operator.
    fn test_str(&self, op: Op, value: &str) -> bool {
        match (&self.arg, op) {
            (Arg::One(v), Op::Eq) => value == v,
            (Arg::One(v), _) if self.subject == Subject::AgentVersion => {
                ordered(op, compare_versions(value, v))
            }
            (Arg::One(v), _) => ordered(op, compare(value, v)),
            (Arg::List(items), Op::In) => items.iter().any(|v| v == value),
            (Arg::Pattern(r), Op::Matches) => r.is_match(value),
            (_, Op::Exists) => true,
            _ => false,
        }
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        let (op, negate) = self.op.positive();
        let positive = match &self.subject {
            Subject::AgentConnected => self.test_str(
                op,
                if facts.agent_connected() {
                    "true"
                } else {
                    "false"
                },
            ),
            Subject::AgentVersion => facts.agent_version().is_some_and(|v| self.test_str(op, v)),
            Subject::Attribute(n) => facts.attribute(n).is_some_and(|v| self.test_str(op, v)),
            Subject::Ec2InstanceId => facts
                .ec2_instance_id()
                .is_some_and(|v| self.test_str(op, v)),
            Subject::TaskGroup => facts.any_task_group(&mut |g| self.test_str(op, g)),
            Subject::RunningTasksCount => match self.arg {
                Arg::Count(n) => ordered(op, facts.running_tasks_count().cmp(&n)),
                _ => false,
            },
            Subject::RegisteredAt => match self.arg {
                Arg::Time { ms, day, .. } => {
                    let at = facts.registered_at_ms();
                    let at = if day {
                        at.div_euclid(86_400_000) * 86_400_000
                    } else {
                        at.div_euclid(1000) * 1000
                    };
                    ordered(op, at.cmp(&ms))
                }
                _ => false,
            },
        };
        positive != negate
    }
}

impl Expr {
    pub fn matches(&self, facts: &dyn Facts) -> bool {
        match self {
            Expr::And(a, b) => a.matches(facts) && b.matches(facts),
            Expr::Or(a, b) => a.matches(facts) || b.matches(facts),
            Expr::Not(e) => !e.matches(facts),
            Expr::Cond(c) => c.holds(facts),
        }
    }

    /// Whether the expression asks about task groups (its answer changes as tasks are placed).
    pub fn uses_task_groups(&self) -> bool {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => a.uses_task_groups() || b.uses_task_groups(),
            Expr::Not(e) => e.uses_task_groups(),
            Expr::Cond(c) => matches!(c.subject, Subject::TaskGroup | Subject::RunningTasksCount),
        }
    }
}
