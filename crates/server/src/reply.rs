//! FTP replies: a three-digit code and one or more lines of text (RFC 959 §4.2).

use std::fmt;

/// One reply to send on the control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The first line's text, continuation lines, and the final line's text.
    /// A single-line reply has only `lines[0]`.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply: `code-first`, the body lines as given, `code last`.
    /// Body lines that would start with digits are indented by one space so
    /// clients cannot mistake them for the end of the reply.
    pub fn multi(
        code: u16,
        first: impl Into<String>,
        body: Vec<String>,
        last: impl Into<String>,
    ) -> Self {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push(first.into());
        lines.extend(body);
        lines.push(last.into());
        Reply { code, lines }
    }

    /// True for 1xx-3xx replies.
    pub fn is_success(&self) -> bool {
        self.code < 400
    }
}

impl fmt::Display for Reply {
    /// The wire form, CRLF terminated. Line breaks inside a text (which would
    /// break the framing) are replaced by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let code = self.code;
        match self.lines.as_slice() {
            [] => write!(f, "{code} \r\n"),
            [only] => write!(f, "{code} {}\r\n", clean(only)),
            [first, body @ .., last] => {
                write!(f, "{code}-{}\r\n", clean(first))?;
                for line in body {
                    let line = clean(line);
                    if line.starts_with(|c: char| c.is_ascii_digit()) {
                        write!(f, " {line}\r\n")?;
                    } else {
                        write!(f, "{line}\r\n")?;
                    }
                }
                write!(f, "{code} {}\r\n", clean(last))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::new(200, "OK").to_string(), "200 OK\r\n");
    }

    #[test]
    fn multi_line_protects_digit_lines_and_newlines() {
        let r = Reply::multi(
            211,
            "Features:",
            vec![" EPSV".into(), "123 x".into()],
            "End",
        );
        assert_eq!(
            r.to_string(),
            "211-Features:\r\n EPSV\r\n 123 x\r\n211 End\r\n"
        );
        assert_eq!(Reply::new(550, "a\r\nb").to_string(), "550 a  b\r\n");
    }
}
