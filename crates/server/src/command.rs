//! Parsing command lines into [`Command`]s. Parsing is pure: it knows nothing
//! of session state, so every syntax rule is unit-tested here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TYPE argument. Only what we support is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    Ascii,
    Binary,
}

/// EPSV's optional argument (RFC 2428 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    Any,
    /// `EPSV 1` (IPv4) or `EPSV 2` (IPv6).
    Protocol(u8),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Quit,
    Noop,
    Syst,
    Feat,
    Opts(String),
    Help,
    Stat(Option<String>),
    Pwd,
    Cwd(String),
    Cdup,
    Mkd(String),
    Rmd(String),
    Dele(String),
    Rnfr(String),
    Rnto(String),
    Type(TransferType),
    Mode,
    Stru,
    List(Option<String>),
    Nlst(Option<String>),
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Size(String),
    Mdtm(String),
    Retr(String),
    Stor(String),
    Appe(String),
    Stou,
    Rest(u64),
    Abor,
    Allo,
    Pasv,
    Epsv(EpsvArg),
    Port(SocketAddr),
    Eprt(SocketAddr),
    /// RFC 2228/4217 security commands.
    Auth(String),
    Pbsz(String),
    Prot(String),
}

impl Command {
    /// Commands allowed before login.
    pub fn allowed_before_login(&self) -> bool {
        matches!(
            self,
            Command::User(_)
                | Command::Pass(_)
                | Command::Quit
                | Command::Noop
                | Command::Syst
                | Command::Feat
                | Command::Opts(_)
                | Command::Help
                | Command::Auth(_)
                | Command::Pbsz(_)
                | Command::Prot(_)
        )
    }
}

impl Command {
    /// Commands that open a data connection (and consume a REST offset).
    pub fn is_transfer(&self) -> bool {
        matches!(
            self,
            Command::Retr(_)
                | Command::Stor(_)
                | Command::Appe(_)
                | Command::Stou
                | Command::List(_)
                | Command::Nlst(_)
                | Command::Mlsd(_)
        )
    }
}

/// Why a line did not parse; each maps to its RFC 959 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("500 Unknown command {0:?}")]
    Unknown(String),
    #[error("502 Command {0} not implemented")]
    NotImplemented(String),
    #[error("501 {0} needs an argument")]
    MissingArgument(&'static str),
    #[error("501 {0}")]
    BadArgument(String),
    #[error("504 {0}")]
    UnsupportedParameter(String),
    /// EPSV or EPRT with a network protocol other than 1 (IPv4) or 2 (IPv6).
    #[error("522 Network protocol not supported, use (1,2)")]
    UnsupportedProtocol,
}

impl ParseError {
    pub fn code(&self) -> u16 {
        match self {
            ParseError::Unknown(_) => 500,
            ParseError::NotImplemented(_) => 502,
            ParseError::MissingArgument(_) | ParseError::BadArgument(_) => 501,
            ParseError::UnsupportedParameter(_) => 504,
            ParseError::UnsupportedProtocol => 522,
        }
    }

    /// The reply text without the code.
    pub fn text(&self) -> String {
        let full = self.to_string();
        full[4..].to_string()
    }
}

/// Parses one command line (terminator already stripped).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, Some(a)),
        None => (line, None),
    };
    // Arguments keep inner and trailing spaces (file names may have them),
    // but an empty argument counts as none.
    let arg = arg.filter(|a| !a.is_empty()).map(str::to_owned);
    let verb = verb.to_ascii_uppercase();
    let need = |name: &'static str| arg.clone().ok_or(ParseError::MissingArgument(name));

    Ok(match verb.as_str() {
        "USER" => Command::User(need("USER")?),
        // An empty password is legal (anonymous clients send one).
        "PASS" => Command::Pass(arg.clone().unwrap_or_default()),
        "QUIT" => Command::Quit,
        "NOOP" => Command::Noop,
        "SYST" => Command::Syst,
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(need("OPTS")?),
        "HELP" => Command::Help,
        "STAT" => Command::Stat(arg),
        "PWD" | "XPWD" => Command::Pwd,
        "CWD" | "XCWD" => Command::Cwd(need("CWD")?),
        "CDUP" | "XCUP" => Command::Cdup,
        "MKD" | "XMKD" => Command::Mkd(need("MKD")?),
        "RMD" | "XRMD" => Command::Rmd(need("RMD")?),
        "DELE" => Command::Dele(need("DELE")?),
        "RNFR" => Command::Rnfr(need("RNFR")?),
        "RNTO" => Command::Rnto(need("RNTO")?),
        "TYPE" => Command::Type(parse_type(&need("TYPE")?)?),
        "MODE" => match need("MODE")?.to_ascii_uppercase().as_str() {
            "S" => Command::Mode,
            other => {
                return Err(ParseError::UnsupportedParameter(format!(
                    "MODE {other} not supported, only S"
                )));
            }
        },
        "STRU" => match need("STRU")?.to_ascii_uppercase().as_str() {
            "F" => Command::Stru,
            other => {
                return Err(ParseError::UnsupportedParameter(format!(
                    "STRU {other} not supported, only F"
                )));
            }
        },
        "LIST" => Command::List(strip_list_options(arg)),
        "NLST" => Command::Nlst(strip_list_options(arg)),
        "MLSD" => Command::Mlsd(arg),
        "MLST" => Command::Mlst(arg),
        "SIZE" => Command::Size(need("SIZE")?),
        "MDTM" => Command::Mdtm(need("MDTM")?),
        "RETR" => Command::Retr(need("RETR")?),
        "STOR" => Command::Stor(need("STOR")?),
        "APPE" => Command::Appe(need("APPE")?),
        "STOU" => Command::Stou,
        "REST" => Command::Rest(
            need("REST")?
                .trim()
                .parse()
                .map_err(|_| ParseError::BadArgument("REST needs a byte offset".into()))?,
        ),
        "ABOR" => Command::Abor,
        "ALLO" => Command::Allo,
        "PASV" => Command::Pasv,
        "EPSV" => Command::Epsv(parse_epsv(arg.as_deref())?),
        "PORT" => Command::Port(parse_port(&need("PORT")?)?),
        "EPRT" => Command::Eprt(parse_eprt(&need("EPRT")?)?),
        "AUTH" => Command::Auth(need("AUTH")?.trim().to_ascii_uppercase()),
        "PBSZ" => Command::Pbsz(need("PBSZ")?.trim().to_string()),
        "PROT" => Command::Prot(need("PROT")?.trim().to_ascii_uppercase()),
        "ACCT" | "SMNT" | "REIN" | "SITE" | "LPRT" | "LPSV" | "CCC" | "ADAT" | "MIC" | "CONF"
        | "ENC" => {
            return Err(ParseError::NotImplemented(verb));
        }
        _ => {
            let shown: String = verb.chars().take(32).collect();
            return Err(ParseError::Unknown(shown));
        }
    })
}

fn parse_type(arg: &str) -> Result<TransferType, ParseError> {
    let mut parts = arg.split_whitespace().map(|p| p.to_ascii_uppercase());
    match (parts.next().as_deref(), parts.next().as_deref()) {
        (Some("A"), None | Some("N")) => Ok(TransferType::Ascii),
        (Some("I"), None) | (Some("L"), Some("8")) => Ok(TransferType::Binary),
        // Well formed but not served here: EBCDIC, ASCII with Telnet or
        // ASA format controls, local bytes other than 8 bits.
        (Some("A" | "E"), Some(_)) | (Some("E"), None) => Err(ParseError::UnsupportedParameter(
            format!("TYPE {arg} not supported"),
        )),
        (Some("L"), Some(bits)) if bits.parse::<u8>().is_ok_and(|bits| bits > 0) => Err(
            ParseError::UnsupportedParameter(format!("TYPE {arg} not supported; use TYPE L 8")),
        ),
        _ => Err(ParseError::BadArgument(format!("unknown TYPE {arg}"))),
    }
}

/// `LIST -la dir` → `dir`: clients pass ls options, which we ignore. Only
/// words made of known ls flags are options, so `LIST -notes.txt` lists
/// that file; `--` ends the options (`LIST -- -l` lists `-l`).
fn strip_list_options(arg: Option<String>) -> Option<String> {
    const FLAGS: &str = "aAdFhlLnRrSt1";
    let arg = arg?;
    let mut rest = arg.as_str();
    loop {
        let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let is_option =
            word.len() > 1 && word.starts_with('-') && word[1..].chars().all(|c| FLAGS.contains(c));
        if word == "--" || is_option {
            rest = tail.trim_start();
        }
        if !is_option {
            break;
        }
    }
    (!rest.is_empty()).then(|| rest.to_string())
}

fn parse_epsv(arg: Option<&str>) -> Result<EpsvArg, ParseError> {
    match arg.map(str::trim) {
        None => Ok(EpsvArg::Any),
        Some(a) if a.eq_ignore_ascii_case("ALL") => Ok(EpsvArg::All),
        Some("1") => Ok(EpsvArg::Protocol(1)),
        Some("2") => Ok(EpsvArg::Protocol(2)),
        Some(_) => Err(ParseError::UnsupportedProtocol),
    }
}

/// `PORT h1,h2,h3,h4,p1,p2`
fn parse_port(arg: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::BadArgument("PORT needs h1,h2,h3,h4,p1,p2".into());
    let nums: Vec<u8> = arg
        .trim()
        .split(',')
        .map(|n| n.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [a, b, c, d, p1, p2] = nums[..] else {
        return Err(bad());
    };
    Ok(SocketAddr::new(
        Ipv4Addr::new(a, b, c, d).into(),
        u16::from(p1) << 8 | u16::from(p2),
    ))
}

/// `EPRT |1|132.235.1.2|6275|` or `EPRT |2|::1|5282|`; any delimiter in 33-126.
fn parse_eprt(arg: &str) -> Result<SocketAddr, ParseError> {
    let bad = |why: &str| ParseError::BadArgument(format!("EPRT: {why}"));
    let arg = arg.trim();
    let delim = arg
        .chars()
        .next()
        .filter(|c| ('!'..='~').contains(c))
        .ok_or_else(|| bad("bad delimiter"))?;
    let fields: Vec<&str> = arg.split(delim).collect();
    let ["", proto, host, port, ""] = fields[..] else {
        return Err(bad("expected |proto|address|port|"));
    };
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    let ip: IpAddr = match proto {
        "1" => host
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("bad IPv4 address"))?
            .into(),
        "2" => host
            .parse::<Ipv6Addr>()
            .map_err(|_| bad("bad IPv6 address"))?
            .into(),
        _ => return Err(ParseError::UnsupportedProtocol),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_arguments_keep_spaces() {
        assert_eq!(
            parse("retr my file.txt "),
            Ok(Command::Retr("my file.txt ".into()))
        );
        assert_eq!(parse("xpwd"), Ok(Command::Pwd));
    }

    #[test]
    fn missing_and_bad_arguments_are_501() {
        assert_eq!(parse("CWD").unwrap_err().code(), 501);
        assert_eq!(parse("REST abc").unwrap_err().code(), 501);
        assert_eq!(parse("PORT 1,2,3").unwrap_err().code(), 501);
        assert_eq!(parse("PORT 1,2,3,4,5,300").unwrap_err().code(), 501);
        assert_eq!(parse("EPRT |1|::1|5|").unwrap_err().code(), 501);
    }

    #[test]
    fn unknown_is_500_and_unimplemented_502() {
        assert_eq!(parse("FOO bar").unwrap_err().code(), 500);
        assert_eq!(parse("SITE CHMOD 777 x").unwrap_err().code(), 502);
        assert_eq!(parse("MODE B").unwrap_err().code(), 504);
        assert_eq!(parse("TYPE E").unwrap_err().code(), 504);
        assert_eq!(parse("TYPE X").unwrap_err().code(), 501);
        assert_eq!(parse("TYPE L 7").unwrap_err().code(), 504);
        assert_eq!(parse("TYPE L").unwrap_err().code(), 501);
        assert_eq!(parse("TYPE L x").unwrap_err().code(), 501);
    }

    #[test]
    fn data_connection_commands() {
        assert_eq!(
            parse("PORT 127,0,0,1,4,1"),
            Ok(Command::Port("127.0.0.1:1025".parse().unwrap()))
        );
        assert_eq!(
            parse("EPRT |2|::1|5282|"),
            Ok(Command::Eprt("[::1]:5282".parse().unwrap()))
        );
        assert_eq!(
            parse("EPRT !1!10.0.0.1!21!"),
            Ok(Command::Eprt("10.0.0.1:21".parse().unwrap()))
        );
        assert_eq!(parse("EPSV ALL"), Ok(Command::Epsv(EpsvArg::All)));
        assert_eq!(parse("EPSV 2"), Ok(Command::Epsv(EpsvArg::Protocol(2))));
        assert_eq!(parse("EPSV 3").unwrap_err().code(), 522);
        assert_eq!(parse("EPRT |3|x|1|").unwrap_err().code(), 522);
        assert_eq!(
            parse("EPSV 0").unwrap_err().to_string(),
            "522 Network protocol not supported, use (1,2)"
        );
    }

    #[test]
    fn list_options_are_ignored() {
        assert_eq!(parse("LIST -la"), Ok(Command::List(None)));
        assert_eq!(
            parse("LIST -a -l dir x"),
            Ok(Command::List(Some("dir x".into())))
        );
        assert_eq!(parse("NLST sub"), Ok(Command::Nlst(Some("sub".into()))));
        assert_eq!(parse("LIST -aL"), Ok(Command::List(None)));
        // Not ls flags: a file name.
        assert_eq!(
            parse("LIST -notes.txt"),
            Ok(Command::List(Some("-notes.txt".into())))
        );
        assert_eq!(parse("LIST -"), Ok(Command::List(Some("-".into()))));
        assert_eq!(
            parse("NLST -l -- -la"),
            Ok(Command::Nlst(Some("-la".into())))
        );
    }

    #[test]
    fn types() {
        assert_eq!(parse("TYPE I"), Ok(Command::Type(TransferType::Binary)));
        assert_eq!(parse("TYPE A N"), Ok(Command::Type(TransferType::Ascii)));
        assert_eq!(parse("TYPE L 8"), Ok(Command::Type(TransferType::Binary)));
    }
}
