//! ECS's cluster query language: `subject operator [argument]`, combined with `and`/`&&`,
//! `or`/`||`, `not`/`!` and parentheses. Used by `memberOf` placement constraints and by
//! `ListContainerInstances --filter`.
//!
//! Pure: [`parse`] turns text into an [`Expr`] (or an error naming the 1-based character
//! position), [`Expr::matches`] evaluates it against anything that can answer [`Facts`].
//! The parser is hand-written and context-sensitive because the language is: `!` is `not` before
//! an expression and part of `!=`, `!~`, `!in`, `!exists` after a subject, and a bare argument
//! such as `g2.*` or `2018-06-18T22:28:28+00:00` may hold characters that are operators elsewhere.

mod ast;
mod parse;
mod values;

pub use ast::{Condition, Expr, Facts, Op, QueryError, Subject, MAX_EXPRESSION_CHARS};
pub use parse::parse;

#[cfg(test)]
mod tests;
