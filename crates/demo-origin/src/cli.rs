//! Command-line options: `demo-origin [--listen ADDR] [--delay-ms N] [--fail MODE]`.

use std::fmt;
use std::net::SocketAddr;

use crate::behaviour::{parse_delay_ms, parse_optional_fail, Behaviour};

/// Environment variable read for the listen address when `--listen` is not given.
pub const LISTEN_ENV: &str = "DEMO_ORIGIN_LISTEN";
/// Listen address when neither `--listen` nor the environment names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8788";

/// Usage text for `--help`.
pub const USAGE: &str = "\
demo-origin: the demo origin of Tollgate's local stack

USAGE:
    demo-origin [--listen ADDR] [--delay-ms N] [--fail MODE]

OPTIONS:
    --listen ADDR    loopback address to bind (default 127.0.0.1:8788, env DEMO_ORIGIN_LISTEN);
                     port 0 picks a free port. The bound URL is printed on stdout.
    --delay-ms N     delay every counted request by N milliseconds
    --fail MODE      fail every counted request: a status 400..=599, timeout or close
    -h, --help       print this help
    -V, --version    print the version

Routes: GET|PUT|PATCH|DELETE /config/{name}, POST /rag/context, anything else echoes.
Control (not counted): GET /_origin/health, GET /_origin/hits, POST /_origin/reset,
GET|POST /_origin/settings. Per-request headers: X-Origin-Delay-Ms, X-Origin-Fail.
Auth stand-in: GET /.well-known/jwks.json serves ES256, RS256 and EdDSA keys;
POST /_origin/tokens with a JSON body of alg and claims mints a token, POST /_origin/jwks/rotate
publishes a new key, GET|POST /_origin/jwks shows the fetch count and sets fail and max_age.
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
    Version,
}

/// Options of a server run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Always a loopback address.
    pub listen: SocketAddr,
    /// The global behaviour at start.
    pub behaviour: Behaviour,
}

/// A command line that cannot run; the message names the option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments (without the program name); `env_listen` is `DEMO_ORIGIN_LISTEN`.
/// Options take their value as the next argument or after `=`.
pub fn parse<I>(args: I, env_listen: Option<String>) -> Result<Command, CliError>
where
    I: IntoIterator<Item = String>,
{
    let mut listen = env_listen.filter(|value| !value.trim().is_empty());
    let mut behaviour = Behaviour::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| CliError(format!("{flag} needs a value")));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => listen = Some(value()?),
            "--delay-ms" => {
                behaviour.delay_ms = parse_delay_ms(&value()?).map_err(|err| CliError(format!("--delay-ms: {err}")))?;
            }
            "--fail" => {
                behaviour.fail = parse_optional_fail(&value()?).map_err(|err| CliError(format!("--fail: {err}")))?;
            }
            other => return Err(CliError(format!("unknown argument {other:?}; see --help"))),
        }
    }
    let listen_text = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text
        .trim()
        .parse()
        .map_err(|_| CliError(format!("listen address {listen_text:?} is not IP:PORT (for example 127.0.0.1:8788)")))?;
    if !listen.ip().is_loopback() {
        return Err(CliError(format!(
            "listen address {listen} is not loopback; demo-origin binds 127.0.0.1 or ::1 only"
        )));
    }
    Ok(Command::Run(Options { listen, behaviour }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::FailMode;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    fn run(list: &[&str], env: Option<&str>) -> Result<Options, CliError> {
        match parse(args(list), env.map(str::to_owned))? {
            Command::Run(options) => Ok(options),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_to_the_documented_port() {
        let options = run(&[], None).unwrap();
        assert_eq!(options.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(options.behaviour, Behaviour::default());
    }

    #[test]
    fn the_flag_beats_the_environment() {
        assert_eq!(run(&[], Some("127.0.0.1:9000")).unwrap().listen.port(), 9000);
        let options = run(&["--listen=127.0.0.1:9001"], Some("127.0.0.1:9000")).unwrap();
        assert_eq!(options.listen.port(), 9001);
    }

    #[test]
    fn reads_the_start_behaviour() {
        let options = run(&["--delay-ms", "150", "--fail", "timeout"], None).unwrap();
        assert_eq!(options.behaviour.delay_ms, 150);
        assert_eq!(options.behaviour.fail, Some(FailMode::Timeout));
    }

    #[test]
    fn refuses_addresses_that_are_not_loopback() {
        let err = run(&["--listen", "0.0.0.0:8788"], None).unwrap_err();
        assert!(err.0.contains("not loopback"), "{err}");
        assert!(run(&["--listen", "[::1]:0"], None).is_ok());
    }

    #[test]
    fn names_the_bad_option() {
        assert!(run(&["--fail", "often"], None).unwrap_err().0.starts_with("--fail"));
        assert!(run(&["--delay-ms"], None).unwrap_err().0.contains("needs a value"));
        assert!(run(&["--bogus"], None).unwrap_err().0.contains("--bogus"));
        assert_eq!(parse(args(&["--help"]), None), Ok(Command::Help));
    }
}
