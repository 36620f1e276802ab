//! Access-log formats: `log_format NAME [escape=default|json|none] STRING...;` compiled at
//! load time into literal text and variables (nginx's `ngx_http_log_compile_format`), and
//! `access_log PATH [FORMAT] | off;`. The request-derived values a format needs are listed as
//! its captures: the session copies exactly those out of the request head when the request
//! starts (the head leaves its buffer long before the line is written).

use super::builder::{Builder, Scope};
use super::lexer::{err, resolve, ConfError, Directive};
use super::values::{split_template, Piece};

type Done = Result<(), ConfError>;

/// How variable values are escaped in a line (literal text never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `"`, `\`, control bytes and bytes ≥ 0x7f as `\xXX`; a missing value as `-`.
    Default,
    /// JSON string escapes; a missing value as nothing.
    Json,
    /// As they are; a missing value as nothing.
    None,
}

/// A value taken from the request head when the request starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// `$request`: the request line as received.
    Request,
    /// `$request_method`.
    Method,
    /// `$request_uri`: the target as sent (origin form), with its query.
    RequestUri,
    /// `$uri`: the normalized path locations match.
    Uri,
    /// `$args`: the query (missing when the target has no `?`).
    Args,
    /// `$host`: the Host name (lower case, no port), else the server's name.
    Host,
    /// `$http_NAME`: a request header, `NAME` with `_` read as `-`.
    Header(String),
}

/// One variable of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogVar {
    // Written as they are, never escaped (nginx's own log variables).
    Status,
    BodyBytesSent,
    BytesSent,
    RequestTime,
    Msec,
    TimeLocal,
    TimeIso8601,
    // Escaped as the format says.
    /// A value captured from the request head: the index in `LogFormat::captures`.
    Captured(u8),
    /// `$is_args`: `?` when the target has a query; the index of the `Args` capture.
    IsArgs(u8),
    RemoteAddr,
    RemotePort,
    RemoteUser,
    RealipRemoteAddr,
    RealipRemotePort,
    ProxyProtocolAddr,
    ProxyProtocolPort,
    ServerName,
    ServerPort,
    ServerProtocol,
    Scheme,
    Connection,
    ConnectionRequests,
    Pid,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    LimitReqStatus,
    LimitConnStatus,
    /// `$gzip_ratio`: original bytes over compressed ones, of a response compressed whole.
    GzipRatio,
}

impl LogVar {
    /// nginx writes these itself, without escaping.
    pub fn unescaped(self) -> bool {
        matches!(
            self,
            LogVar::Status | LogVar::BodyBytesSent | LogVar::BytesSent | LogVar::RequestTime | LogVar::Msec | LogVar::TimeLocal | LogVar::TimeIso8601
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPart {
    Lit(String),
    Var(LogVar),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub name: String,
    pub escape: Escape,
    pub parts: Vec<LogPart>,
    /// The request-derived values the parts refer to (`LogVar::Captured`).
    pub captures: Vec<Capture>,
}

/// The default format: nginx's `combined` followed by the upstream fields.
pub const COMBINED: &str = concat!(
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"",
    " upstream_addr=$upstream_addr upstream_status=$upstream_status request_time=$request_time upstream_response_time=$upstream_response_time"
);

/// Which access log a block writes, and in which format (indices into `Http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLogRef {
    pub file: usize,
    pub format: usize,
}

impl LogFormat {
    /// Compiles `texts` (already joined by the caller, as nginx concatenates the strings).
    pub(super) fn compile(d: &Directive, name: &str, escape: Escape, text: &str) -> Result<LogFormat, ConfError> {
        let mut f = LogFormat { name: name.to_string(), escape, parts: Vec::new(), captures: Vec::new() };
        for piece in split_template(d, text)? {
            match piece {
                Piece::Lit(s) => match f.parts.last_mut() {
                    Some(LogPart::Lit(prev)) => prev.push_str(s),
                    _ => f.parts.push(LogPart::Lit(s.to_string())),
                },
                Piece::Var(v) => {
                    let var = f.variable(d, v)?;
                    f.parts.push(LogPart::Var(var));
                }
            }
        }
        Ok(f)
    }

    fn variable(&mut self, d: &Directive, name: &str) -> Result<LogVar, ConfError> {
        let capture = match name {
            "request" => Some(Capture::Request),
            "request_method" => Some(Capture::Method),
            "request_uri" => Some(Capture::RequestUri),
            "uri" | "document_uri" => Some(Capture::Uri),
            "args" | "query_string" => Some(Capture::Args),
            "host" => Some(Capture::Host),
            _ => name.strip_prefix("http_").filter(|h| !h.is_empty()).map(|h| Capture::Header(h.replace('_', "-").to_ascii_lowercase())),
        };
        if let Some(c) = capture {
            return Ok(LogVar::Captured(self.capture(d, c)?));
        }
        Ok(match name {
            "status" => LogVar::Status,
            "body_bytes_sent" => LogVar::BodyBytesSent,
            "bytes_sent" => LogVar::BytesSent,
            "request_time" => LogVar::RequestTime,
            "msec" => LogVar::Msec,
            "time_local" => LogVar::TimeLocal,
            "time_iso8601" => LogVar::TimeIso8601,
            "is_args" => LogVar::IsArgs(self.capture(d, Capture::Args)?),
            "remote_addr" => LogVar::RemoteAddr,
            "remote_port" => LogVar::RemotePort,
            "remote_user" => LogVar::RemoteUser,
            "realip_remote_addr" => LogVar::RealipRemoteAddr,
            "realip_remote_port" => LogVar::RealipRemotePort,
            "proxy_protocol_addr" => LogVar::ProxyProtocolAddr,
            "proxy_protocol_port" => LogVar::ProxyProtocolPort,
            "server_name" => LogVar::ServerName,
            "server_port" => LogVar::ServerPort,
            "server_protocol" => LogVar::ServerProtocol,
            "scheme" => LogVar::Scheme,
            "connection" => LogVar::Connection,
            "connection_requests" => LogVar::ConnectionRequests,
            "pid" => LogVar::Pid,
            "upstream_addr" => LogVar::UpstreamAddr,
            "upstream_status" => LogVar::UpstreamStatus,
            "upstream_response_time" => LogVar::UpstreamResponseTime,
            "limit_req_status" => LogVar::LimitReqStatus,
            "limit_conn_status" => LogVar::LimitConnStatus,
            "gzip_ratio" => LogVar::GzipRatio,
            _ => return err(&d.pos, format!("unknown \"{}\" variable in log format \"{}\"", name, self.name)),
        })
    }

    /// The index of capture `c`, added if new.
    fn capture(&mut self, d: &Directive, c: Capture) -> Result<u8, ConfError> {
        let i = match self.captures.iter().position(|x| *x == c) {
            Some(i) => i,
            None => {
                self.captures.push(c);
                self.captures.len() - 1
            }
        };
        u8::try_from(i).or_else(|_| err(&d.pos, "too many request variables in one log format"))
    }
}

/// The formats every configuration has: `combined` (pounce's, with the upstream fields).
pub(super) fn builtin() -> Vec<LogFormat> {
    let d = Directive { name: "log_format".into(), args: Vec::new(), pos: super::lexer::Pos { file: "(built-in)".into(), line: 0 }, block: None };
    vec![LogFormat::compile(&d, "combined", Escape::Default, COMBINED).expect("the built-in format compiles")]
}

/// `log_format NAME [escape=default|json|none] STRING...;`
pub(super) fn log_format(b: &mut Builder, d: &Directive, _: &mut Scope) -> Done {
    let name = &d.args[0];
    let formats = &mut b.cfg.http.log_formats;
    if formats.iter().any(|f| f.name == *name) || name == "upstream" {
        return err(&d.pos, format!("duplicate \"log_format\" name \"{}\"", name));
    }
    let mut rest = &d.args[1..];
    let mut escape = Escape::Default;
    if let Some(e) = rest.first().and_then(|a| a.strip_prefix("escape=")) {
        escape = match e {
            "default" => Escape::Default,
            "json" => Escape::Json,
            "none" => Escape::None,
            _ => return err(&d.pos, format!("unknown log format escaping \"{}\"", e)),
        };
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return err(&d.pos, "invalid number of arguments in \"log_format\" directive");
    }
    let f = LogFormat::compile(d, name, escape, &rest.concat())?;
    b.cfg.http.log_formats.push(f);
    Ok(())
}

/// `access_log PATH [FORMAT] | off;` (the file is opened by each worker; several blocks may
/// share it).
pub(super) fn access_log(b: &mut Builder, d: &Directive, s: &mut Scope) -> Done {
    let a = &d.args;
    let log = if a[0] == "off" {
        if a.len() > 1 {
            return err(&d.pos, format!("invalid parameter \"{}\"", a[1]));
        }
        None
    } else {
        // "upstream" was the name of the one format before log_format existed.
        let name = a.get(1).map_or("combined", |n| if n == "upstream" { "combined" } else { n.as_str() });
        let Some(format) = b.cfg.http.log_formats.iter().position(|f| f.name == name) else {
            return err(&d.pos, format!("unknown log format \"{}\"", name));
        };
        let path = resolve(&b.prefix, &a[0]);
        let logs = &mut b.cfg.http.access_logs;
        let file = logs.iter().position(|l| *l == path).unwrap_or_else(|| {
            logs.push(path);
            logs.len() - 1
        });
        Some(AccessLogRef { file, format })
    };
    s.patch(d)?.access_log = Some(log);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::load_str;
    use super::*;

    #[test]
    fn formats_compile() {
        let c = load_str(
            "http {\n log_format j escape=json '{\"u\":\"$uri\",' '\"s\":$status,\"h\":\"$http_x_trace_id\",\"q\":\"$args$is_args\"}';\n server { listen 127.0.0.1:1; access_log logs/a.log j; location / { access_log logs/b.log; return 200; } }\n}\n",
        )
        .expect("valid");
        let f = &c.http.log_formats[1];
        assert_eq!(f.escape, Escape::Json);
        assert_eq!(f.captures, vec![Capture::Uri, Capture::Header("x-trace-id".into()), Capture::Args]);
        assert_eq!(f.parts[0], LogPart::Lit("{\"u\":\"".into()));
        assert!(f.parts.contains(&LogPart::Var(LogVar::IsArgs(2))));
        let srv = &c.http.servers[0];
        assert_eq!(srv.settings.access_log, Some(AccessLogRef { file: 0, format: 1 }));
        assert_eq!(srv.locations[0].settings.access_log, Some(AccessLogRef { file: 1, format: 0 }));
        assert_eq!(c.http.log_formats[0].name, "combined");
    }

    #[test]
    fn format_errors() {
        let e = |t: &str| load_str(t).expect_err(t).to_string();
        assert!(e("http {\n log_format a '$nope';\n}\n").contains("t.conf:2: unknown \"nope\" variable"));
        assert!(e("http {\n log_format combined '$status';\n}\n").contains("duplicate \"log_format\" name \"combined\""));
        assert!(e("http {\n log_format a escape=xml '$status';\n}\n").contains("unknown log format escaping \"xml\""));
        assert!(e("http {\n log_format a escape=json;\n}\n").contains("invalid number of arguments"));
        assert!(e("http {\n access_log logs/a.log nosuch;\n}\n").contains("t.conf:2: unknown log format \"nosuch\""));
        assert!(e("http {\n log_format a '${status';\n}\n").contains("unclosed variable"));
        // A format may be defined after the access_log that names it, anywhere in http.
        assert!(load_str("http {\n access_log logs/a.log late;\n log_format late '$status';\n}\n").is_ok());
    }
}
