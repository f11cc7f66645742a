//! Command-line / environment configuration, parsed once into values that cannot be wrong
//! (a non-empty token, a parsed Redis URL, non-zero pool size and timeouts).

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;

use crate::command::Command;
use crate::percent;

/// `redis-rest`: an Upstash-compatible Redis REST server over a real redis-server.
#[derive(Debug, Clone, Parser)]
#[command(name = "redis-rest", version, about)]
pub struct Config {
    /// Address to listen on. Bind loopback unless you mean otherwise.
    #[arg(long, env = "REDIS_REST_LISTEN", default_value = "127.0.0.1:8079")]
    pub listen: SocketAddr,

    /// Redis to forward to: redis://[[user]:password@]host[:port][/db]
    #[arg(
        long = "redis",
        env = "REDIS_REST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = RedisTarget::parse
    )]
    pub redis: RedisTarget,

    /// Bearer token clients must present (Authorization header or `_token` query parameter).
    #[arg(long, env = "REDIS_REST_TOKEN", hide_env_values = true, value_parser = Token::parse)]
    pub token: Token,

    /// Most connections kept to Redis at once.
    #[arg(long, env = "REDIS_REST_POOL_SIZE", default_value = "16")]
    pub pool_size: NonZeroUsize,

    /// Timeout for dialling Redis, in milliseconds.
    #[arg(long, env = "REDIS_REST_CONNECT_TIMEOUT_MS", default_value = "1000")]
    pub connect_timeout_ms: NonZeroU64,

    /// Timeout for one exchange with Redis (write + all replies), in milliseconds.
    #[arg(long, env = "REDIS_REST_COMMAND_TIMEOUT_MS", default_value = "10000")]
    pub command_timeout_ms: NonZeroU64,

    /// Most HTTP connections open at once; past it new connections wait in the listen backlog.
    #[arg(long, env = "REDIS_REST_MAX_CONNECTIONS", default_value = "512")]
    pub max_connections: NonZeroUsize,

    /// Time a client gets to send a request's headers, in milliseconds, counted from when the
    /// connection opens or the previous response ends: silent, slow and idle keep-alive
    /// connections are closed after it.
    #[arg(long, env = "REDIS_REST_HEADER_TIMEOUT_MS", default_value = "10000")]
    pub header_timeout_ms: NonZeroU64,

    /// Most `/subscribe` and `/psubscribe` streams open at once (each holds its own Redis
    /// connection).
    #[arg(long, env = "REDIS_REST_MAX_SUBSCRIPTIONS", default_value = "64")]
    pub max_subscriptions: NonZeroUsize,

    /// Interval between keep-alive comments on an open event stream, in milliseconds.
    #[arg(long, env = "REDIS_REST_SSE_KEEPALIVE_MS", default_value = "15000")]
    pub sse_keepalive_ms: NonZeroU64,

    /// Log one line per request to stderr.
    #[arg(long, env = "REDIS_REST_VERBOSE")]
    pub verbose: bool,
}

impl Config {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.get())
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.get())
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.get())
    }

    pub fn sse_keepalive(&self) -> Duration {
        Duration::from_millis(self.sse_keepalive_ms.get())
    }
}

/// The shared secret; never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            Err("the token must not be empty".to_owned())
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.len() != candidate.len() {
            return false;
        }
        expected.iter().zip(candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where Redis is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: u32,
}

impl RedisTarget {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("unsupported Redis URL {url:?}: expected redis://host:port"))?;
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let decode = |s: &str| String::from_utf8_lossy(&percent::decode(s, false)).into_owned();
                (Some(decode(user)).filter(|s| !s.is_empty()), Some(decode(pass)).filter(|s| !s.is_empty()))
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("bad IPv6 host in Redis URL {url:?}"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("missing host in Redis URL {url:?}"));
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?} in Redis URL"))?,
        };
        let db = match path {
            "" => 0,
            p => p.parse().map_err(|_| format!("bad database number {p:?} in Redis URL"))?,
        };
        Ok(Self { host, port, username, password, db })
    }

    /// `host:port` for dialling (IPv6 in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server and database, logged in as another ACL user.
    pub fn as_user(&self, username: &str, password: &str) -> Self {
        Self { username: Some(username.to_owned()), password: Some(password.to_owned()), ..self.clone() }
    }

    /// AUTH and SELECT to send on every new connection, per the URL.
    pub fn setup_commands(&self) -> Vec<Command> {
        let mut cmds = Vec::new();
        if let Some(password) = &self.password {
            let mut args = Vec::new();
            if let Some(user) = &self.username {
                args.push(Bytes::from(user.clone()));
            }
            args.push(Bytes::from(password.clone()));
            cmds.push(Command::new(Bytes::from_static(b"AUTH"), args));
        }
        if self.db != 0 {
            cmds.push(Command::new(Bytes::from_static(b"SELECT"), vec![Bytes::from(self.db.to_string())]));
        }
        cmds
    }
}

/// Shows the URL without its password.
impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.username.as_deref().unwrap_or(""))?;
        }
        write!(f, "{}", self.addr())?;
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_full_urls() {
        let t = RedisTarget::parse("redis://127.0.0.1:6380").expect("valid");
        assert_eq!(t.addr(), "127.0.0.1:6380");
        assert!(t.setup_commands().is_empty());

        let t = RedisTarget::parse("redis://app:p%40ss@localhost/2").expect("valid");
        assert_eq!(t.addr(), "localhost:6379");
        assert_eq!(t.to_string(), "redis://app:***@localhost:6379/2");
        let setup: Vec<Vec<Vec<u8>>> = t
            .setup_commands()
            .iter()
            .map(|c| std::iter::once(c.name()).chain(c.args()).map(|b| b.to_vec()).collect())
            .collect();
        assert_eq!(
            setup,
            vec![vec![b"AUTH".to_vec(), b"app".to_vec(), b"p@ss".to_vec()], vec![b"SELECT".to_vec(), b"2".to_vec()],]
        );

        let t = RedisTarget::parse("redis://[::1]:7000").expect("valid");
        assert_eq!(t.addr(), "[::1]:7000");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in ["http://x", "rediss://x:1", "redis://", "redis://h:notaport", "redis://h:1/x", "redis://[::1"] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_comparison_is_exact() {
        let t = Token::parse("secret").expect("non-empty");
        assert!(t.matches(b"secret"));
        assert!(!t.matches(b"secreT"));
        assert!(!t.matches(b"secret2"));
        assert!(!t.matches(b""));
        assert!(Token::parse("").is_err());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn flags_and_env_are_accepted() {
        let c = Config::try_parse_from(["redis-rest", "--token", "t", "--pool-size", "4"]).expect("valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8079");
        assert_eq!(c.pool_size.get(), 4);
        assert!(Config::try_parse_from(["redis-rest", "--token", "t", "--pool-size", "0"]).is_err());
    }
}
