//! The parser: hand-written and context-sensitive because the language is (see the module's
//! documentation).

use super::ast::{Arg, Condition, Expr, Op, QueryError, Subject, MAX_EXPRESSION_CHARS};
use super::values::parse_time;

/// Deep enough for any hand-written query, shallow enough that evaluation cannot overflow.
const MAX_NESTING: usize = 32;
/// Patterns are user input: bound what compiling one may cost.
const REGEX_SIZE_LIMIT: usize = 1 << 16;

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
