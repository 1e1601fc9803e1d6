//! ECS's cluster query language: `subject operator [argument]`, combined with `and`/`&&`,
//! `or`/`||`, `not`/`!` and parentheses. Used by `memberOf` placement constraints and by
//! `ListContainerInstances --filter`.
//!
//! Pure: [`parse`] turns text into an [`Expr`] (or an error naming the 1-based character
//! position), [`Expr::matches`] evaluates it against anything that can answer [`Facts`].
//! The parser is hand-written and context-sensitive because the language is: `!` is `not` before
//! an expression and part of `!=`, `!~`, `!in`, `!exists` after a subject, and a bare argument
//! such as `g2.*` or `2018-06-18T22:28:28+00:00` may hold characters that are operators elsewhere.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use thiserror::Error;

/// ECS's limit on a memberOf expression.
pub const MAX_EXPRESSION_CHARS: usize = 2000;
/// Deep enough for any hand-written query, shallow enough that evaluation cannot overflow.
const MAX_NESTING: usize = 32;
/// Patterns are user input: bound what compiling one may cost.
const REGEX_SIZE_LIMIT: usize = 1 << 16;

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
    arg: Arg,
}

#[derive(Debug, Clone)]
enum Arg {
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
    fn symbol(self) -> &'static str {
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

    fn from_word(w: &str) -> Option<Op> {
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
    fn parse(word: &str) -> Option<Subject> {
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
    fn allows(&self, op: Op) -> bool {
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

/// Parses a cluster query expression.
pub fn parse(text: &str) -> Result<Expr, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_EXPRESSION_CHARS {
        return Err(QueryError {
            position: MAX_EXPRESSION_CHARS + 1,
            message: format!(
                "an expression is at most {MAX_EXPRESSION_CHARS} characters, this one has {}",
                chars.len()
            ),
        });
    }
    let mut p = Parser { s: chars, i: 0 };
    p.skip_ws();
    if p.at_end() {
        return Err(p.error("the expression is empty"));
    }
    let e = p.or(0)?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error(format!(
            "expected 'and', 'or' or the end, found {}",
            p.describe_here()
        )));
    }
    Ok(e)
}

struct Parser {
    s: Vec<char>,
    i: usize,
}

/// Characters that end a subject or an operator word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || "-_.:/@".contains(c)
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> QueryError {
        QueryError {
            position: self.i + 1,
            message: message.into(),
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn describe_here(&self) -> String {
        if self.at_end() {
            return "the end of the expression".to_string();
        }
        let rest: String = self.s[self.i..].iter().take(20).collect();
        format!("{rest:?}")
    }

    fn starts_with(&self, lit: &str) -> bool {
        lit.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k) == Some(c))
    }

    /// A keyword (`and`, `or`, `not`) here, as a whole word, case-insensitively.
    fn keyword(&self, kw: &str) -> bool {
        let n = kw.chars().count();
        kw.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k).is_some_and(|h| h.eq_ignore_ascii_case(&c)))
            && !self.peek_at(n).is_some_and(is_word_char)
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_word_char) {
            self.i += 1;
        }
        self.s[start..self.i].iter().collect()
    }

    fn or(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut left = self.and(depth)?;
        loop {
            self.skip_ws();
            if self.starts_with("||") || self.keyword("or") {
                self.i += 2;
            } else {
                return Ok(left);
            }
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
    }

    fn and(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut left = self.unary(depth)?;
        loop {
            self.skip_ws();
            if self.starts_with("&&") {
                self.i += 2;
            } else if self.keyword("and") {
                self.i += 3;
            } else {
                return Ok(left);
            }
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, QueryError> {
        if depth >= MAX_NESTING {
            return Err(self.error(format!(
                "expressions nest at most {MAX_NESTING} levels deep"
            )));
        }
        self.skip_ws();
        if self.peek() == Some('!') {
            self.i += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.keyword("not") {
            self.i += 3;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.peek() == Some('(') {
            self.i += 1;
            let e = self.or(depth + 1)?;
            self.skip_ws();
            if self.peek() != Some(')') {
                return Err(self.error(format!("expected ')', found {}", self.describe_here())));
            }
            self.i += 1;
            return Ok(e);
        }
        self.condition().map(Expr::Cond)
    }

    fn condition(&mut self) -> Result<Condition, QueryError> {
        let at = self.i;
        let word = self.word();
        if word.is_empty() {
            return Err(self.error(format!(
                "expected a subject (agentConnected, agentVersion, attribute:NAME, \
                 ec2InstanceId, registeredAt, runningTasksCount, task:group), found {}",
                self.describe_here()
            )));
        }
        let Some(subject) = Subject::parse(&word) else {
            self.i = at;
            return Err(self.error(format!(
                "unknown subject {word:?}: expected agentConnected, agentVersion, \
                 attribute:NAME, ec2InstanceId, registeredAt, runningTasksCount or task:group"
            )));
        };
        self.skip_ws();
        let op_at = self.i;
        let op = self.operator()?;
        if !subject.allows(op) {
            self.i = op_at;
            return Err(self.error(format!(
                "operator {} cannot be used with {subject}",
                op.symbol()
            )));
        }
        let arg = self.argument(&subject, op)?;
        Ok(Condition { subject, op, arg })
    }

    fn operator(&mut self) -> Result<Op, QueryError> {
        for (lit, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=~", Op::Matches),
            ("!~", Op::NotMatches),
            (">", Op::Gt),
            ("<", Op::Lt),
        ] {
            if self.starts_with(lit) {
                self.i += lit.chars().count();
                return Ok(op);
            }
        }
        let negated = self.peek() == Some('!');
        let at = self.i;
        if negated {
            self.i += 1;
        }
        let w = self.word();
        let op = match (negated, w.as_str()) {
            (true, "in") => Some(Op::NotIn),
            (true, "exists") => Some(Op::NotExists),
            (false, w) => Op::from_word(w),
            _ => None,
        };
        op.ok_or_else(|| {
            self.i = at;
            self.error(format!(
                "expected an operator (== != > >= < <= exists !exists in !in =~ !~), found {}",
                self.describe_here()
            ))
        })
    }

    fn argument(&mut self, subject: &Subject, op: Op) -> Result<Arg, QueryError> {
        if matches!(op, Op::Exists | Op::NotExists) {
            return Ok(Arg::None);
        }
        self.skip_ws();
        let at = self.i;
        if matches!(op, Op::In | Op::NotIn) {
            if self.peek() != Some('[') {
                return Err(self.error(format!(
                    "{} takes a list such as [a, b], found {}",
                    op.symbol(),
                    self.describe_here()
                )));
            }
            self.i += 1;
            let mut items = Vec::new();
            loop {
                self.skip_ws();
                if self.peek() == Some(']') && items.is_empty() {
                    return Err(self.error("the list is empty"));
                }
                items.push(self.value()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.i += 1,
                    Some(']') => {
                        self.i += 1;
                        break;
                    }
                    _ => {
                        return Err(self.error(format!(
                            "expected ',' or ']' in the list, found {}",
                            self.describe_here()
                        )))
                    }
                }
            }
            return Ok(Arg::List(items));
        }
        let v = self.value()?;
        let fail = |message: String| QueryError {
            position: at + 1,
            message,
        };
        match (subject, op) {
            (_, Op::Matches | Op::NotMatches) => {
                // Java's Pattern.matches, which ECS documents, matches the whole value.
                regex::RegexBuilder::new(&format!("^(?:{v})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(Arg::Pattern)
                    .map_err(|e| fail(format!("{v:?} is not a valid pattern: {e}")))
            }
            (Subject::RegisteredAt, _) => parse_time(&v)
                .map(|(ms, day)| Arg::Time {
                    text: v.clone(),
                    ms,
                    day,
                })
                .ok_or_else(|| {
                    fail(format!(
                "{v:?} is not a date: use 2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, \
                 2018-06-18T22:28:28 or 2018-06-18"
            ))
                }),
            (Subject::RunningTasksCount, _) => v
                .parse::<u64>()
                .map(Arg::Count)
                .map_err(|_| fail(format!("{v:?} is not a count of tasks"))),
            _ => Ok(Arg::One(v)),
        }
    }

    /// A literal: quoted with ' or " (backslash escapes), or a bare run of characters up to
    /// whitespace, ',' , ')' , ']' , '&&' or '||'.
    fn value(&mut self) -> Result<String, QueryError> {
        self.skip_ws();
        if let Some(q @ ('\'' | '"')) = self.peek() {
            let start = self.i;
            self.i += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => {
                        self.i = start;
                        return Err(self.error("the quoted value is not closed"));
                    }
                    Some('\\') if self.peek_at(1).is_some() => {
                        out.push(self.peek_at(1).unwrap_or('\\'));
                        self.i += 2;
                    }
                    Some(c) if c == q => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_whitespace()
                || ",)]".contains(c)
                || self.starts_with("&&")
                || self.starts_with("||")
                || (self.i == start && "([".contains(c))
            {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(self.error(format!("expected a value, found {}", self.describe_here())));
        }
        Ok(self.s[start..self.i].iter().collect())
    }
}

/// `2018-06-18T22:28:28+00:00`, `…Z`, `…` (UTC) or `2018-06-18` (the day, UTC) → ms; the flag
/// says a date only was given.
fn parse_time(v: &str) -> Option<(i64, bool)> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = match v.split_once('T') {
        Some((d, r)) => (d, Some(r)),
        None => (v, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=days_in_month(y, m)).contains(&day) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    let Some(rest) = rest else {
        return Some((days * 86_400_000, true));
    };
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(k) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(k);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (c, sign * (oh * 3600 + om * 60))
    } else {
        (rest, 0)
    };
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':');
    let (h, mi, s) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
    if c.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some((secs * 1000, false))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Orders two values as numbers when both are plain numbers, as dotted versions when both are
/// (`1.9.0` < `1.14.5`), otherwise as strings.
fn compare(a: &str, b: &str) -> Ordering {
    let plain = |s: &str| s.matches('.').count() <= 1;
    if plain(a) && plain(b) {
        if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
        }
    }
    compare_versions(a, b)
}

/// Versions part by part (`v` prefix and `-…`/`+…` suffixes ignored); strings otherwise.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let version = |s: &str| -> Option<Vec<u64>> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['-', '+']).next()?;
        core.split('.').map(|p| p.parse().ok()).collect()
    };
    match (version(a), version(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
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

#[cfg(test)]
mod tests;
