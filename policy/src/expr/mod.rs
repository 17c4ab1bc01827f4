//! The rule language: typed syntax tree, parser with type checking, and the reference
//! evaluator.

pub mod ast;
pub mod eval;
pub mod parse;
