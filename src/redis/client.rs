//! The REST client: commands, pipelines and transactions over one [`Transport`], scripts
//! EVALSHA-first, the read-your-writes token echoed, and counts of what it cost.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::decode::{decode_batch, decode_single};
use super::{Arg, Breaker, BreakerState, Command, HttpReply, RedisError, Reply, ReqwestTransport, Script, Transport};
use crate::clock::Clock;

/// One entry of [`Client::pipeline_with_scripts`]: a plain command, or a script run EVALSHA-first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'s> {
    /// Sent as is.
    Command(Command),
    /// Sent as `EVALSHA`; re-sent once as `EVAL` if Redis answers `NOSCRIPT`.
    Script {
        /// The script to run.
        script: &'s Script,
        /// Its `KEYS`.
        keys: Vec<String>,
        /// Its `ARGV`.
        args: Vec<Arg>,
    },
}

impl<'s> Entry<'s> {
    /// A script entry.
    pub fn script(script: &'s Script, keys: &[String], args: &[Arg]) -> Self {
        Entry::Script { script, keys: keys.to_vec(), args: args.to_vec() }
    }

    /// The command sent first (`EVALSHA` for a script).
    fn first_command(&self) -> Command {
        match self {
            Entry::Command(cmd) => cmd.clone(),
            Entry::Script { script, keys, args } => script.evalsha(keys, args),
        }
    }
}

impl From<Command> for Entry<'_> {
    fn from(cmd: Command) -> Self {
        Entry::Command(cmd)
    }
}

/// What clones of one client share: the last sync token, the cost counters and the breaker.
#[derive(Default)]
struct Shared {
    sync_token: RefCell<Option<String>>,
    requests: Cell<u64>,
    commands: Cell<u64>,
    guard: Option<Guard>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("requests", &self.requests).field("commands", &self.commands).finish()
    }
}

/// The circuit breaker every call of a client passes, on the client's clock.
struct Guard {
    breaker: RefCell<Breaker>,
    clock: Rc<dyn Clock>,
}

/// A Redis client over the Upstash REST protocol; clones share the sync token and counters.
///
/// Not `Send` (its transport's futures may wrap JS promises); one per isolate or task.
#[derive(Debug, Clone)]
pub struct Client<T: Transport = ReqwestTransport> {
    transport: T,
    shared: Rc<Shared>,
}

/// Results of a batch, one per command, in order; the outer error fails the batch as a whole.
pub type BatchResult = Result<Vec<Result<Reply, RedisError>>, RedisError>;

impl<T: Transport> Client<T> {
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self { transport, shared: Rc::new(Shared::default()) }
    }

    /// A client whose every call (of it and its clones) first asks `breaker`, at `clock`'s time,
    /// and reports its outcome to it: an open breaker answers [`RedisError::CircuitOpen`] at once.
    pub fn guarded(transport: T, breaker: Breaker, clock: Rc<dyn Clock>) -> Self {
        let guard = Guard { breaker: RefCell::new(breaker), clock };
        Self { transport, shared: Rc::new(Shared { guard: Some(guard), ..Shared::default() }) }
    }

    /// The breaker's state now (`closed` for a client without one).
    pub fn breaker_state(&self) -> BreakerState {
        match &self.shared.guard {
            Some(g) => g.breaker.borrow().state(g.clock.now_ms()),
            None => BreakerState::Closed,
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// `POST /`: one command, one HTTP request.
    pub async fn command(&self, cmd: Command) -> Result<Reply, RedisError> {
        let reply = self.send("/", super::fast::command_json(&cmd), 1).await?;
        decode_single(&reply)
    }

    /// Like [`Client::command`], for a call whose timeout costs more than its wait (see
    /// [`Transport::post_patient`]).
    pub async fn command_patient(&self, cmd: Command) -> Result<Reply, RedisError> {
        let reply = self.send_with("/", super::fast::command_json(&cmd), 1, true).await?;
        decode_single(&reply)
    }

    /// Like [`Client::eval`], for a script whose timeout costs more than its wait (see
    /// [`Transport::post_patient`]).
    pub async fn eval_patient(&self, script: &Script, keys: &[String], args: &[Arg]) -> Result<Reply, RedisError> {
        match self.command_patient(script.evalsha(keys, args)).await {
            Err(e) if e.is_noscript() => self.command_patient(script.eval(keys, args)).await,
            other => other,
        }
    }

    /// `POST /pipeline`: several commands in one HTTP request, executed in order but not
    /// atomically; each has its own result. An empty list costs nothing.
    pub async fn pipeline(&self, cmds: Vec<Command>) -> BatchResult {
        self.batch("/pipeline", &cmds).await
    }

    /// `POST /multi-exec`: several commands as one transaction in one HTTP request. A discarded
    /// transaction is `Err(Redis { kind: ExecAbort, .. })`; runtime errors are per entry.
    pub async fn multi_exec(&self, cmds: Vec<Command>) -> BatchResult {
        self.batch("/multi-exec", &cmds).await
    }

    /// Runs a script: `EVALSHA`, then `EVAL` once if Redis answers `NOSCRIPT` (two requests the
    /// first time per server, one after).
    pub async fn eval(&self, script: &Script, keys: &[String], args: &[Arg]) -> Result<Reply, RedisError> {
        match self.command(script.evalsha(keys, args)).await {
            Err(e) if e.is_noscript() => self.command(script.eval(keys, args)).await,
            other => other,
        }
    }

    /// Like [`Client::pipeline`], but [`Entry::Script`] entries go as `EVALSHA`, and those answered
    /// `NOSCRIPT` are re-sent as `EVAL` in one more `/pipeline` whose results take their places.
    ///
    /// Entries are not atomic: commands after a `NOSCRIPT` entry ran before its `EVAL` did. If the
    /// second request fails as a whole, its error becomes the result of each re-sent entry.
    pub async fn pipeline_with_scripts(&self, entries: Vec<Entry<'_>>) -> BatchResult {
        let first: Vec<Command> = entries.iter().map(Entry::first_command).collect();
        let mut results = self.batch("/pipeline", &first).await?;
        let retry: Vec<(usize, Command)> = entries
            .iter()
            .zip(&results)
            .enumerate()
            .filter_map(|(i, (entry, result))| match (entry, result) {
                (Entry::Script { script, keys, args }, Err(e)) if e.is_noscript() => Some((i, script.eval(keys, args))),
                _ => None,
            })
            .collect();
        if retry.is_empty() {
            return Ok(results);
        }
        let (slots, cmds): (Vec<usize>, Vec<Command>) = retry.into_iter().unzip();
        let second = self.batch("/pipeline", &cmds).await;
        match second {
            Ok(replies) => {
                for (slot, reply) in slots.into_iter().zip(replies) {
                    if let Some(place) = results.get_mut(slot) {
                        *place = reply;
                    }
                }
            }
            Err(e) => {
                for slot in slots {
                    if let Some(place) = results.get_mut(slot) {
                        *place = Err(e.clone());
                    }
                }
            }
        }
        Ok(results)
    }

    /// `SCAN`s for `pattern` (whole key namespace, `COUNT` 500 per round) and deletes what it
    /// finds; how many keys were deleted. Gives up after 100,000 rounds (a server whose scan never
    /// ends) with [`RedisError::Malformed`].
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let mut cursor = "0".to_owned();
        let mut deleted = 0u64;
        for _ in 0..MAX_SCAN_ROUNDS {
            let scan = Command::new("SCAN").arg(cursor.as_str()).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
            let (next, found) = parse_scan(&self.command(scan).await?)?;
            if !found.is_empty() {
                let reply = self.command(Command::del(found)).await?;
                deleted += reply.to_i64().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
        Err(RedisError::Malformed("SCAN did not finish".to_owned()))
    }

    /// HTTP requests that reached (or may have reached) the server, from this client and its
    /// clones: a request refused by the breaker or whose connection failed is not counted.
    pub fn requests_sent(&self) -> u64 {
        self.shared.requests.get()
    }

    /// Redis commands in those requests: one per command, batch entry or script run (an
    /// `EVALSHA` and its `EVAL` count two).
    pub fn commands_sent(&self) -> u64 {
        self.shared.commands.get()
    }

    /// The last `Upstash-Sync-Token` the server sent, echoed on the next request.
    pub fn sync_token(&self) -> Option<String> {
        self.shared.sync_token.borrow().clone()
    }

    async fn batch(&self, path: &str, cmds: &[Command]) -> BatchResult {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let reply = self.send(path, super::fast::commands_json(cmds), cmds.len()).await?;
        decode_batch(&reply, cmds.len())
    }

    /// Counts the request, sends the JSON `body` with the last sync token and keeps the new one.
    async fn send(&self, path: &str, json: String, commands: usize) -> Result<HttpReply, RedisError> {
        self.send_with(path, json, commands, false).await
    }

    async fn send_with(
        &self,
        path: &str,
        json: String,
        commands: usize,
        patient: bool,
    ) -> Result<HttpReply, RedisError> {
        let shared = &self.shared;
        if let Some(g) = &shared.guard {
            if !g.breaker.borrow_mut().try_acquire(g.clock.now_ms()) {
                return Err(RedisError::CircuitOpen);
            }
        }
        let token = shared.sync_token.borrow().clone();
        let result = if patient {
            self.transport.post_patient(path, json, token).await
        } else {
            self.transport.post(path, json, token).await
        };
        // A 5xx answer is as much a failure as no answer; any other status shows Redis reachable.
        let outcome = match &result {
            Ok(r) if r.status >= 500 => Err(RedisError::Http { status: r.status, message: String::new() }),
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        if let Some(g) = &shared.guard {
            g.breaker.borrow_mut().record(&outcome, g.clock.now_ms());
        }
        if outcome.as_ref().err().is_none_or(RedisError::reached_server) {
            shared.requests.set(shared.requests.get().saturating_add(1));
            shared.commands.set(shared.commands.get().saturating_add(commands as u64));
        }
        let reply = result?;
        if let Some(token) = &reply.sync_token {
            *shared.sync_token.borrow_mut() = Some(token.clone());
        }
        Ok(reply)
    }
}

/// Keys asked for per `SCAN` round.
const SCAN_COUNT: u32 = 500;
/// `SCAN` rounds after which [`Client::delete_matching`] gives up.
const MAX_SCAN_ROUNDS: u32 = 100_000;

/// The cursor and keys of a `SCAN` reply.
fn parse_scan(reply: &Reply) -> Result<(String, Vec<String>), RedisError> {
    let bad = || RedisError::Malformed(format!("unexpected SCAN reply {reply:?}"));
    let [cursor, found] = reply.as_array().ok_or_else(bad)? else {
        return Err(bad());
    };
    let cursor =
        cursor.as_str().map(str::to_owned).or_else(|| cursor.as_int().map(|n| n.to_string())).ok_or_else(bad)?;
    let found = found
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| k.as_str().map(str::to_owned).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cursor, found))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::collections::VecDeque;

    use serde_json::{json, Value};

    use super::*;
    use crate::redis::decode::encode_entry;

    #[test]
    fn scan_replies_give_the_cursor_and_the_keys() {
        let ok = Reply::Array(vec![Reply::Bulk(b"17".to_vec()), Reply::Array(vec![Reply::Bulk(b"k1".to_vec())])]);
        assert_eq!(parse_scan(&ok).unwrap(), ("17".to_owned(), vec!["k1".to_owned()]));
        assert!(parse_scan(&Reply::Nil).is_err());
        assert!(parse_scan(&Reply::Array(vec![Reply::Bulk(b"0".to_vec())])).is_err());
    }
    use crate::redis::RedisErrorKind;

    /// A request the fake saw.
    #[derive(Debug, Clone)]
    struct Sent {
        path: String,
        body: Value,
        sync_token: Option<String>,
    }

    /// Answers from a script, in order, and records every request.
    #[derive(Default)]
    struct FakeTransport {
        answers: RefCell<VecDeque<Result<HttpReply, RedisError>>>,
        sent: RefCell<Vec<Sent>>,
    }

    impl FakeTransport {
        fn answer(&self, status: u16, body: Value, token: Option<&str>) {
            let reply = HttpReply { status, body: body.to_string().into_bytes(), sync_token: token.map(str::to_owned) };
            self.answers.borrow_mut().push_back(Ok(reply));
        }

        fn fail(&self, e: RedisError) {
            self.answers.borrow_mut().push_back(Err(e));
        }

        fn sent(&self) -> Vec<Sent> {
            self.sent.borrow().clone()
        }
    }

    impl Transport for FakeTransport {
        async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError> {
            let body = serde_json::from_str(&body).expect("the client sends JSON");
            self.sent.borrow_mut().push(Sent { path: path.to_owned(), body, sync_token });
            self.answers.borrow_mut().pop_front().expect("an answer is scripted for every request")
        }
    }

    fn setup() -> (Rc<FakeTransport>, Client<Rc<FakeTransport>>) {
        let fake = Rc::new(FakeTransport::default());
        (fake.clone(), Client::new(fake))
    }

    fn ok(reply: Reply) -> Value {
        encode_entry(&Ok(reply))
    }

    fn err(message: &str) -> Value {
        encode_entry(&Err(message.to_owned()))
    }

    const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

    fn script() -> Script {
        Script::new("return ARGV[1]")
    }

    #[tokio::test]
    async fn a_command_is_posted_to_the_root_as_a_json_array() {
        let (fake, client) = setup();
        fake.answer(200, ok(Reply::Bulk(b"bar".to_vec())), None);
        let got = client.command(Command::get("foo")).await;
        assert_eq!(got, Ok(Reply::Bulk(b"bar".to_vec())));
        let sent = fake.sent();
        assert_eq!(sent[0].path, "/");
        assert_eq!(sent[0].body, json!(["GET", "foo"]));
        assert_eq!((client.requests_sent(), client.commands_sent()), (1, 1));
    }

    #[tokio::test]
    async fn integers_go_as_json_numbers() {
        let (fake, client) = setup();
        fake.answer(200, ok(Reply::Ok), None);
        client.command(Command::set_px("k", "v", 1500)).await.unwrap();
        assert_eq!(fake.sent()[0].body, json!(["SET", "k", "v", "PX", 1500]));
    }

    #[tokio::test]
    async fn eval_falls_back_to_eval_once_on_noscript() {
        let (fake, client) = setup();
        let s = script();
        fake.answer(400, err(NOSCRIPT), None);
        fake.answer(200, ok(Reply::Bulk(b"x".to_vec())), None);
        let got = client.eval(&s, &["k".to_owned()], &[Arg::from("x")]).await;
        assert_eq!(got, Ok(Reply::Bulk(b"x".to_vec())));
        let sent = fake.sent();
        assert_eq!(sent[0].body, json!(["EVALSHA", s.sha1(), 1, "k", "x"]));
        assert_eq!(sent[1].body, json!(["EVAL", s.source(), 1, "k", "x"]));
        assert_eq!((client.requests_sent(), client.commands_sent()), (2, 2));
    }

    #[tokio::test]
    async fn eval_costs_one_request_when_the_script_is_cached() {
        let (fake, client) = setup();
        fake.answer(200, ok(Reply::Int(7)), None);
        assert_eq!(client.eval(&script(), &[], &[]).await, Ok(Reply::Int(7)));
        assert_eq!(client.requests_sent(), 1);
    }

    #[tokio::test]
    async fn eval_does_not_retry_other_errors_nor_a_second_noscript() {
        let (fake, client) = setup();
        fake.answer(400, err("ERR Error running script"), None);
        let got = client.eval(&script(), &[], &[]).await;
        assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::Other, .. })));
        assert_eq!(client.requests_sent(), 1);

        fake.answer(400, err(NOSCRIPT), None);
        fake.answer(400, err(NOSCRIPT), None);
        assert!(client.eval(&script(), &[], &[]).await.unwrap_err().is_noscript());
        assert_eq!(client.requests_sent(), 3);
    }

    #[tokio::test]
    async fn a_pipeline_is_one_request_with_a_result_per_command() {
        let (fake, client) = setup();
        fake.answer(
            200,
            json!([ok(Reply::Ok), err("ERR value is not an integer or out of range"), ok(Reply::Int(2))]),
            None,
        );
        let got = client
            .pipeline(vec![Command::set_px("a", "1", 10), Command::new("INCR").arg("s"), Command::new("INCR").arg("n")])
            .await
            .unwrap();
        assert_eq!(got[0], Ok(Reply::Ok));
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(Reply::Int(2)));
        assert_eq!(fake.sent()[0].path, "/pipeline");
        assert_eq!((client.requests_sent(), client.commands_sent()), (1, 3));
    }

    #[tokio::test]
    async fn an_empty_pipeline_sends_nothing() {
        let (fake, client) = setup();
        assert_eq!(client.pipeline(Vec::new()).await, Ok(Vec::new()));
        assert_eq!(client.multi_exec(Vec::new()).await, Ok(Vec::new()));
        assert!(fake.sent().is_empty());
        assert_eq!(client.requests_sent(), 0);
    }

    #[tokio::test]
    async fn a_short_batch_answer_is_malformed() {
        let (fake, client) = setup();
        fake.answer(200, json!([ok(Reply::Int(1))]), None);
        let got = client.pipeline(vec![Command::get("a"), Command::get("b")]).await;
        assert!(matches!(got, Err(RedisError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_discarded_transaction_is_execabort() {
        let (fake, client) = setup();
        fake.answer(400, err("EXECABORT Transaction discarded because of previous errors."), None);
        let got = client.multi_exec(vec![Command::get("a"), Command::new("GET")]).await;
        assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::ExecAbort, .. })));
        assert_eq!(fake.sent()[0].path, "/multi-exec");
    }

    #[tokio::test]
    async fn pipeline_with_scripts_resends_only_noscript_entries_as_eval_and_merges_in_place() {
        let (fake, client) = setup();
        let a = Script::new("return 'a'");
        let b = Script::new("return 'b'");
        let keys = ["{t}:k".to_owned()];
        fake.answer(
            200,
            json!([err(NOSCRIPT), ok(Reply::Bulk(b"v".to_vec())), ok(Reply::Int(5)), err(NOSCRIPT)]),
            None,
        );
        fake.answer(200, json!([ok(Reply::Int(1)), ok(Reply::Int(2))]), None);
        let got = client
            .pipeline_with_scripts(vec![
                Entry::script(&a, &keys, &[Arg::Int(3)]),
                Command::get("c").into(),
                Entry::script(&b, &[], &[]),
                Entry::script(&b, &keys, &[Arg::from("z")]),
            ])
            .await
            .unwrap();
        assert_eq!(got, vec![Ok(Reply::Int(1)), Ok(Reply::Bulk(b"v".to_vec())), Ok(Reply::Int(5)), Ok(Reply::Int(2))]);
        let sent = fake.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].body,
            json!([
                ["EVALSHA", a.sha1(), 1, "{t}:k", 3],
                ["GET", "c"],
                ["EVALSHA", b.sha1(), 0],
                ["EVALSHA", b.sha1(), 1, "{t}:k", "z"]
            ])
        );
        assert_eq!(sent[1].path, "/pipeline");
        assert_eq!(sent[1].body, json!([["EVAL", a.source(), 1, "{t}:k", 3], ["EVAL", b.source(), 1, "{t}:k", "z"]]));
        assert_eq!((client.requests_sent(), client.commands_sent()), (2, 6));
    }

    #[tokio::test]
    async fn pipeline_with_scripts_costs_one_request_when_scripts_are_cached() {
        let (fake, client) = setup();
        let s = script();
        fake.answer(200, json!([ok(Reply::Int(1)), ok(Reply::Nil)]), None);
        let got = client.pipeline_with_scripts(vec![Entry::script(&s, &[], &[]), Command::get("x").into()]).await;
        assert_eq!(got, Ok(vec![Ok(Reply::Int(1)), Ok(Reply::Nil)]));
        assert_eq!(client.requests_sent(), 1);
    }

    #[tokio::test]
    async fn a_noscript_answer_to_a_plain_command_is_not_retried() {
        let (fake, client) = setup();
        fake.answer(200, json!([err(NOSCRIPT)]), None);
        let got = client.pipeline_with_scripts(vec![Command::new("EVALSHA").arg("00").arg(0u32).into()]).await.unwrap();
        assert!(got[0].as_ref().unwrap_err().is_noscript());
        assert_eq!(client.requests_sent(), 1);
    }

    #[tokio::test]
    async fn a_failed_second_request_fails_only_the_resent_entries() {
        let (fake, client) = setup();
        let s = script();
        fake.answer(200, json!([err(NOSCRIPT), ok(Reply::Int(9))]), None);
        fake.fail(RedisError::Timeout(50));
        let got =
            client.pipeline_with_scripts(vec![Entry::script(&s, &[], &[]), Command::get("x").into()]).await.unwrap();
        assert_eq!(got, vec![Err(RedisError::Timeout(50)), Ok(Reply::Int(9))]);
    }

    #[tokio::test]
    async fn the_last_sync_token_is_echoed_and_shared_by_clones() {
        let (fake, client) = setup();
        let clone = client.clone();
        fake.answer(200, ok(Reply::Ok), Some("t1"));
        fake.answer(200, ok(Reply::Ok), None);
        fake.answer(400, err("ERR boom"), Some("t2"));
        fake.answer(200, ok(Reply::Ok), Some("t3"));
        client.command(Command::get("a")).await.unwrap();
        clone.command(Command::get("a")).await.unwrap();
        assert!(client.command(Command::get("a")).await.is_err());
        clone.command(Command::get("a")).await.unwrap();
        let tokens: Vec<_> = fake.sent().into_iter().map(|s| s.sync_token).collect();
        assert_eq!(tokens, vec![None, Some("t1".to_owned()), Some("t1".to_owned()), Some("t2".to_owned())]);
        assert_eq!(client.sync_token().as_deref(), Some("t3"));
        assert_eq!((clone.requests_sent(), clone.commands_sent()), (4, 4));
    }

    #[tokio::test]
    async fn transport_failures_pass_through_and_are_transient() {
        let (fake, client) = setup();
        fake.fail(RedisError::Timeout(100));
        fake.fail(RedisError::Transport("connection refused".to_owned()));
        let timeout = client.command(Command::get("a")).await.unwrap_err();
        let refused = client.pipeline(vec![Command::get("a")]).await.unwrap_err();
        assert_eq!(timeout, RedisError::Timeout(100));
        assert!(timeout.is_transient());
        assert!(matches!(refused, RedisError::Transport(_)));
        assert!(refused.is_transient());
        assert_eq!(client.requests_sent(), 1, "a refused connection never reached the server");
    }

    #[tokio::test]
    async fn a_busy_script_is_transient_and_unauthorized_is_not() {
        let (fake, client) = setup();
        fake.answer(400, err("BUSY Redis is busy running a script."), None);
        fake.answer(401, json!({"error": "WRONGPASS invalid or missing auth token"}), None);
        assert!(client.command(Command::get("a")).await.unwrap_err().is_transient());
        let unauthorized = client.command(Command::get("a")).await.unwrap_err();
        assert_eq!(unauthorized, RedisError::Unauthorized);
        assert!(!unauthorized.is_transient());
    }
}
