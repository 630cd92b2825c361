//! The dialect sqlparser reads rules in: eKuiper's lexical rules.

use sqlparser::dialect::Dialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// eKuiper's lexical rules (its `lexical_elements.md`): `"user"` and `'user'`
/// are both string literals, backticks quote identifiers (reserved words,
/// spaces, any Unicode), and `->` reaches into a nested field, binding
/// tighter than any arithmetic (`a->b + 1` is `(a->b) + 1`).
#[derive(Debug)]
pub(super) struct EkuiperDialect;

impl Dialect for EkuiperDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    /// eKuiper writes `TUMBLINGWINDOW(ss, 10) FILTER (WHERE …)`: parsed so
    /// that a rule using it is told it is not supported yet, by name.
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        // The precedence sqlparser gives `::` and `[`: above every operator.
        (parser.peek_token_ref().token == Token::Arrow).then_some(Ok(50))
    }
}
