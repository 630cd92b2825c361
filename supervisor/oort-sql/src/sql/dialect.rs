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

/// The function `OVER (WHEN cond)` becomes, so that sqlparser, which knows
/// only SQL's window specifications, can read eKuiper's sliding-window
/// trigger: `OVER (PARTITION BY __oort_over_when(cond))`.
pub(super) const OVER_WHEN: &str = "__oort_over_when";

/// Rewrites eKuiper's `OVER (WHEN cond)` into the form [`OVER_WHEN`] names;
/// a statement without one is returned as it is.
pub(super) fn rewrite_over_when(text: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Tokenizer, Whitespace};
    // Cheap test first: most rules have no OVER at all.
    if !text.to_ascii_uppercase().contains("OVER") {
        return Ok(text.into());
    }
    let mut tokens = Tokenizer::new(&EkuiperDialect, text).tokenize().map_err(|e| e.to_string())?;
    let word = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
    let significant =
        |tokens: &[Token], from: usize| (from..tokens.len()).find(|&i| !matches!(tokens[i], Token::Whitespace(_)));
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        if !word(&tokens[i], Keyword::OVER) {
            i += 1;
            continue;
        }
        let Some(open) = significant(&tokens, i + 1).filter(|&o| tokens[o] == Token::LParen) else {
            i += 1;
            continue;
        };
        let Some(when) = significant(&tokens, open + 1).filter(|&w| word(&tokens[w], Keyword::WHEN)) else {
            i += 1;
            continue;
        };
        let Some(close) = closing(&tokens, open) else { return Err("OVER (WHEN …) is not closed".into()) };
        tokens.insert(close, Token::RParen);
        let call = format!("PARTITION BY {OVER_WHEN}(");
        tokens[when] = Token::Whitespace(Whitespace::Space);
        tokens.insert(when + 1, Token::make_word(&call, None));
        let close = close + 2;
        changed = true;
        // SQL reads FILTER before OVER; eKuiper writes either order.
        let filter = significant(&tokens, close + 1).filter(|&f| word(&tokens[f], Keyword::FILTER));
        let filter_open = filter.and_then(|f| significant(&tokens, f + 1)).filter(|&o| tokens[o] == Token::LParen);
        if let Some(filter_close) = filter_open.and_then(|o| closing(&tokens, o)) {
            let over: Vec<Token> = tokens.drain(i..=close).collect();
            let at = filter_close + 1 - over.len();
            tokens.insert(at, Token::Whitespace(Whitespace::Space));
            tokens.splice(at + 1..at + 1, over);
            i = filter_close + 2;
        } else {
            i = close + 1;
        }
    }
    if !changed {
        return Ok(text.into());
    }
    Ok(tokens.iter().map(ToString::to_string).collect::<String>().into())
}

/// The parenthesis that closes the one at `open`.
fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    (open..tokens.len()).find(|&j| {
        match tokens[j] {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        depth == 0
    })
}
