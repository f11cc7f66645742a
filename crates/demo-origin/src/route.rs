//! Which handler a request goes to, from its method and path alone.

use hyper::Method;

/// The counted routes, with the stable names used in `/_origin/hits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Config,
    Rag,
    Echo,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Rag => "rag",
            Self::Echo => "echo",
        }
    }
}

/// The control endpoints under `/_origin/`; never counted, never delayed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Health,
    Hits,
    Reset,
    Settings,
    /// `/_origin/chat`: the chat completions' counters.
    Chat,
    /// `POST /_origin/tokens`: mint a test token.
    Tokens,
    /// `GET|POST /_origin/jwks`: how the key set is served.
    Jwks,
    /// `POST /_origin/jwks/rotate`: publish a new signing key.
    Rotate,
}

/// What one config request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOp {
    Get,
    Put,
    Patch,
    Delete,
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Control(Control),
    /// A path under `/_origin/` that is not a control endpoint.
    UnknownControl,
    Config {
        name: String,
        op: ConfigOp,
    },
    Rag,
    /// `POST /v1/chat/completions`; counted in `/_origin/chat`, not in the hits.
    Chat,
    Echo,
    /// `GET /.well-known/jwks.json`: the key set (not counted; its fetches are counted apart).
    KeySet,
}

/// Where the key set is served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Path prefix reserved for control endpoints.
pub const CONTROL_PREFIX: &str = "/_origin/";

impl Route {
    /// Routes by method and path. `HEAD` on a config is a `GET`; methods a config does not take
    /// fall through to the echo route, like every other unknown method and path.
    pub fn of(method: &Method, path: &str) -> Self {
        if let Some(rest) = path.strip_prefix(CONTROL_PREFIX) {
            return match rest {
                "health" => Self::Control(Control::Health),
                "hits" => Self::Control(Control::Hits),
                "reset" => Self::Control(Control::Reset),
                "settings" => Self::Control(Control::Settings),
                "chat" => Self::Control(Control::Chat),
                "tokens" => Self::Control(Control::Tokens),
                "jwks" => Self::Control(Control::Jwks),
                "jwks/rotate" => Self::Control(Control::Rotate),
                _ => Self::UnknownControl,
            };
        }
        if let Some(name) = path.strip_prefix("/config/") {
            let op = match *method {
                Method::GET | Method::HEAD => Some(ConfigOp::Get),
                Method::PUT => Some(ConfigOp::Put),
                Method::PATCH => Some(ConfigOp::Patch),
                Method::DELETE => Some(ConfigOp::Delete),
                _ => None,
            };
            if let Some(op) = op.filter(|_| !name.is_empty() && !name.contains('/')) {
                return Self::Config { name: name.to_owned(), op };
            }
        }
        if path == JWKS_PATH && (method == Method::GET || method == Method::HEAD) {
            return Self::KeySet;
        }
        if path == "/rag/context" && method == Method::POST {
            return Self::Rag;
        }
        if path == "/v1/chat/completions" && method == Method::POST {
            return Self::Chat;
        }
        Self::Echo
    }

    /// The counted route this is, or `None` for control paths.
    pub fn kind(&self) -> Option<RouteKind> {
        match self {
            Self::Control(_) | Self::UnknownControl | Self::Chat | Self::KeySet => None,
            Self::Config { .. } => Some(RouteKind::Config),
            Self::Rag => Some(RouteKind::Rag),
            Self::Echo => Some(RouteKind::Echo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_configs_by_method() {
        assert_eq!(Route::of(&Method::HEAD, "/config/app"), Route::Config { name: "app".into(), op: ConfigOp::Get });
        assert_eq!(Route::of(&Method::PATCH, "/config/x"), Route::Config { name: "x".into(), op: ConfigOp::Patch });
        assert_eq!(Route::of(&Method::POST, "/config/app"), Route::Echo);
        assert_eq!(Route::of(&Method::GET, "/config/"), Route::Echo);
        assert_eq!(Route::of(&Method::GET, "/config/a/b"), Route::Echo);
    }

    #[test]
    fn rag_takes_post_only() {
        assert_eq!(Route::of(&Method::POST, "/rag/context"), Route::Rag);
        assert_eq!(Route::of(&Method::GET, "/rag/context"), Route::Echo);
    }

    #[test]
    fn chat_completions_take_post_only() {
        assert_eq!(Route::of(&Method::POST, "/v1/chat/completions"), Route::Chat);
        assert_eq!(Route::of(&Method::GET, "/v1/chat/completions"), Route::Echo);
        assert_eq!(Route::of(&Method::GET, "/_origin/chat"), Route::Control(Control::Chat));
    }

    #[test]
    fn control_paths_are_not_counted_routes() {
        assert_eq!(Route::of(&Method::GET, "/_origin/hits"), Route::Control(Control::Hits));
        assert_eq!(Route::of(&Method::GET, "/_origin/nope").kind(), None);
        assert_eq!(Route::of(&Method::GET, "/_origin").kind(), Some(RouteKind::Echo));
        assert_eq!(Route::of(&Method::POST, "/_origin/jwks/rotate"), Route::Control(Control::Rotate));
        assert_eq!(Route::of(&Method::GET, JWKS_PATH), Route::KeySet);
        assert_eq!(Route::of(&Method::GET, JWKS_PATH).kind(), None);
        assert_eq!(Route::of(&Method::POST, JWKS_PATH), Route::Echo);
    }
}
