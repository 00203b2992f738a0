//! wzp-interop: drives a running wzp-relay with quinn, the QUIC stack that real
//! WarzonePhone clients use, and checks the room flow end to end.
//!
//! Usage: wzp-interop --addr 127.0.0.1:PORT [options] [SCENARIO]
//!
//! Scenarios:
//!   fanout (default)  A, B, C join room "interop-a" (C dials SNI "Interop-A", which the
//!                     relay must lowercase), D, E join "interop-b"; check the
//!                     CallAnswer of every join and every RoomUpdate; every client sends
//!                     N media datagrams; each must receive exactly the datagrams of the
//!                     other members of its own room; D leaves and E must be told.
//!   churn             A stays in room "interop-churn" while B joins and leaves --cycles
//!                     times (default 60): A must get every RoomUpdate, i.e. well over the
//!                     100 bidi streams of initial credit, so the relay has to honour and
//!                     wait for MAX_STREAMS credit from the client.
//!   signal            what an app does on its "_signal" connection (SNI "_signal"): A and
//!                     B register presence (RegisterPresenceAck with relay_build), Ping ->
//!                     Pong, Reflect -> its own address, a throw-away reflect probe (all-zero
//!                     key); A calls B (the relay must replace A's false caller_fingerprint),
//!                     B accepts, both get CallSetup with each other's addresses, join room
//!                     "call-interop-1" with their own identities and exchange 20 datagrams
//!                     each way; C, not a party, must be closed with "not a party of call";
//!                     MediaPathReports cross, A hangs up; B calls A, A rejects, B gets
//!                     Hangup. Needs a relay that serves "_signal" (GnuTLS patched for "_").
//!   load              benchmark load, not a pass/fail check of the relay: --rooms x
//!                     --participants clients, each its own quinn Endpoint (own UDP socket)
//!                     doing the full join (SNI = room "PREFIX-r", signed CallOffer, verified
//!                     CallAnswer, then a RoomUpdate listing its whole room), at most
//!                     --concurrency joins in flight. Then the first --speakers of each room
//!                     send --rate datagrams/s of --size bytes, each speaker on its own tokio
//!                     interval (MissedTickBehavior::Skip: a tick missed by a busy generator
//!                     is dropped, the rest stay on the speaker's phase grid; the send lag
//!                     reports it). Speaker k = participant x rooms + room, of K in all,
//!                     starts k x (1000/rate ms) / K after t0, so a room's speakers are
//!                     spread over the period as independent clients are. Each datagram is
//!                     the 12-byte media header, "WZPL", sender k u32, seq u32 and send time
//!                     u64 (us since this process started; senders and receivers share the
//!                     clock, so receive - send is the one-way latency, including this
//!                     process's own scheduling), then filler. Window: [t0 + warmup,
//!                     t0 + warmup + duration) by send time; expected = datagrams each
//!                     speaker sent in it x (joined members of its room - 1); delivered =
//!                     those received until 0.5 s after the window. With --relay-pid, at the
//!                     window's start and end: the relay's CPU (sum of
//!                     /proc/PID/task/*/schedstat, else /proc/PID/stat) and VmRSS, and
//!                     SIGUSR1 (the relay logs a "stats:" line each time). Prints a "LOAD"
//!                     line and "LOAD_JSON {...}" (joined, join_failures, expected, delivered,
//!                     delivery_ratio, latency_ms, window_s, relay {cpu_s, rss_kb_start,
//!                     rss_kb_end, cpu_us_per_delivered}, gen_cpu_s, ...). Exit 0 when it
//!                     ran, whatever the loss; 1 when more than 5% of the clients could not
//!                     join (or none could: relay unreachable). The relay limits handshakes
//!                     per source address (--max-handshakes-per-addr, default 32) and
//!                     participants (--max-sessions, default 100): raise them for big runs;
//!                     every client needs a file descriptor (ulimit -n).
//!   selftest          only the built-in crypto/JSON checks against the spec's test vectors.
//!
//! Options:
//!   --addr ADDR               relay address (required unless SCENARIO is selftest)
//!   --packets N               datagrams sent per client (default 50)
//!   --cycles N                join/leave cycles in the churn scenario (default 60)
//!   --relay-fingerprint FP    expected relay identity fingerprint (xxxx:xxxx:...)
//!   --shared-endpoint         all clients share one UDP socket (the relay must demultiplex
//!                             by connection ID, as the desktop client needs)
//!   -v, --verbose             log every signal and datagram summary
//!
//! Options of the load scenario:
//!   --rooms R                 rooms (default 40)
//!   --participants P          clients per room (default 5)
//!   --speakers S              clients of each room that send (default P)
//!   --rate PPS                datagrams per second per speaker (default 50)
//!   --size BYTES              whole datagram, header included (default 112; 32..1150)
//!   --duration SEC            measured window (default 8)
//!   --warmup SEC              media before the window (default 2)
//!   --concurrency N           joins in flight (default 50)
//!   --room-prefix STR         rooms are STR-0, STR-1, ... (default "load")
//!   --relay-pid PID           the relay process, for its CPU, RSS and SIGUSR1 stats lines
//!   --runtime-threads N       tokio worker threads (default 1: a current_thread runtime)
//!
//! Exit status: 0 success, 1 failure (a message starting with "FAIL" says why), 2 usage.
//! Written for Rust 1.63 (Debian 12's toolchain).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::signature::KeyPair;
use ring::{agreement, digest, hkdf, rand as ring_rand, signature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::timeout;

type Res<T> = Result<T, String>;

/// Cap on the whole scenario.
const OVERALL_LIMIT: Duration = Duration::from_secs(30);
/// Cap on one protocol step (handshake, one expected signal, ...).
const STEP: Duration = Duration::from_secs(5);
/// Largest signal frame a client accepts (the spec's limit).
const MAX_SIGNAL_LEN: usize = 1 << 20;
/// Size of every media datagram this program sends: 12-byte header + 48-byte payload.
const DGRAM_LEN: usize = 60;
const PAYLOAD_MAGIC: &[u8; 4] = b"WZPI";

static START: Mutex<Option<Instant>> = Mutex::new(None);

fn elapsed_ms() -> u128 {
    let mut start = START.lock().unwrap();
    match *start {
        Some(t) => t.elapsed().as_millis(),
        None => {
            *start = Some(Instant::now());
            0
        }
    }
}

/// Progress lines are muted while a scenario repeats a step many times.
static QUIET: AtomicBool = AtomicBool::new(false);

macro_rules! say {
    ($($arg:tt)*) => {
        if !QUIET.load(Ordering::Relaxed) {
            println!("[{:>6} ms] {}", elapsed_ms(), format!($($arg)*))
        }
    };
}

/// Await `fut` for at most `limit`; the error names the step.
async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> Res<F::Output> {
    match timeout(limit, fut).await {
        Ok(v) => Ok(v),
        Err(_) => Err(format!("timed out after {} ms: {}", limit.as_millis(), what)),
    }
}

// ---------------------------------------------------------------------------------------
// Crypto helpers (ring)

struct FixedLen(usize);

impl hkdf::KeyType for FixedLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 with no salt, as the upstream clients derive keys from a seed.
fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]);
    let prk = salt.extract(ikm);
    let info_parts = [info];
    let okm = prk
        .expand(&info_parts, FixedLen(32))
        .expect("HKDF expand of 32 bytes cannot fail");
    let mut out = [0u8; 32];
    okm.fill(&mut out).expect("HKDF fill of 32 bytes cannot fail");
    out
}

/// Identity fingerprint: SHA-256(pub)[0..16] as 8 groups of 4 lowercase hex digits.
fn fingerprint(public: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, public);
    let b = d.as_ref();
    let mut groups = Vec::with_capacity(8);
    for i in 0..8 {
        groups.push(format!("{:02x}{:02x}", b[2 * i], b[2 * i + 1]));
    }
    groups.join(":")
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{:02x}", b));
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let val = |c: u8| -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex digit in a built-in test vector"),
        }
    };
    s.chunks(2).map(|p| (val(p[0]) << 4) | val(p[1])).collect()
}

struct Identity {
    key: signature::Ed25519KeyPair,
    public: [u8; 32],
    fingerprint: String,
}

impl Identity {
    /// Upstream derivation: Ed25519 secret = HKDF(seed, "warzone-ed25519").
    fn from_seed(seed: &[u8; 32]) -> Identity {
        let secret = hkdf32(seed, b"warzone-ed25519");
        let key = signature::Ed25519KeyPair::from_seed_unchecked(&secret)
            .expect("any 32-byte Ed25519 seed is accepted");
        let mut public = [0u8; 32];
        public.copy_from_slice(key.public_key().as_ref());
        let fingerprint = fingerprint(&public);
        Identity { key, public, fingerprint }
    }
}

// ---------------------------------------------------------------------------------------
// Signal messages (serde, externally tagged like the upstream SignalMessage enum)

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct QualityProfile {
    codec: String,
    fec_ratio: f32,
    frame_duration_ms: u8,
    frames_per_block: u8,
}

fn profile(codec: &str, fec_ratio: f32, frame_duration_ms: u8, frames_per_block: u8) -> QualityProfile {
    QualityProfile {
        codec: codec.to_string(),
        fec_ratio,
        frame_duration_ms,
        frames_per_block,
    }
}

fn profile_good() -> QualityProfile {
    profile("Opus24k", 0.2, 20, 5)
}

/// What real clients offer: STUDIO_64K, 48K, 32K, GOOD, DEGRADED, CATASTROPHIC.
fn all_profiles() -> Vec<QualityProfile> {
    vec![
        profile("Opus64k", 0.1, 20, 5),
        profile("Opus48k", 0.1, 20, 5),
        profile("Opus32k", 0.1, 20, 5),
        profile_good(),
        profile("Opus6k", 0.5, 40, 10),
        profile("Codec2_1200", 1.0, 40, 8),
    ]
}

#[derive(Serialize, Debug)]
struct CallOffer {
    identity_pub: [u8; 32],
    ephemeral_pub: [u8; 32],
    signature: Vec<u8>,
    supported_profiles: Vec<QualityProfile>,
    alias: Option<String>,
}

#[derive(Serialize, Debug)]
enum Outgoing {
    CallOffer(CallOffer),
    RegisterPresence(RegisterPresence),
    Ping(PingPong),
    /// A unit variant: serde writes it as the bare string "Reflect".
    Reflect,
    DirectCallOffer(DirectCallOffer),
    DirectCallAnswer(DirectCallAnswer),
    MediaPathReport(MediaPathReport),
    Hangup(Hangup),
}

#[derive(Deserialize, Debug)]
struct CallAnswer {
    identity_pub: [u8; 32],
    ephemeral_pub: [u8; 32],
    signature: Vec<u8>,
    chosen_profile: QualityProfile,
}

#[derive(Deserialize, Debug, Clone)]
struct RoomParticipant {
    fingerprint: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    relay_label: Option<String>,
}

#[derive(Deserialize, Debug)]
struct RoomUpdate {
    count: u32,
    participants: Vec<RoomParticipant>,
}

#[derive(Deserialize, Debug)]
struct QualityDirective {
    recommended_profile: QualityProfile,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Debug)]
enum Incoming {
    CallAnswer(CallAnswer),
    RoomUpdate(RoomUpdate),
    QualityDirective(QualityDirective),
}

fn incoming_name(m: &Incoming) -> &'static str {
    match m {
        Incoming::CallAnswer(_) => "CallAnswer",
        Incoming::RoomUpdate(_) => "RoomUpdate",
        Incoming::QualityDirective(_) => "QualityDirective",
    }
}

// "_signal" connections (spec 4.2, 4.3). Optional fields the relay may omit carry
// serde(default); unknown fields are ignored (serde's default, as upstream).

#[derive(Serialize, Debug)]
struct RegisterPresence {
    identity_pub: [u8; 32],
    signature: Vec<u8>,
    alias: Option<String>,
}

#[derive(Deserialize, Debug)]
struct RegisterPresenceAck {
    success: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    relay_build: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct PingPong {
    timestamp_ms: u64,
}

#[derive(Deserialize, Debug)]
struct ReflectResponse {
    observed_addr: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct DirectCallOffer {
    caller_fingerprint: String,
    #[serde(default)]
    caller_alias: Option<String>,
    target_fingerprint: String,
    call_id: String,
    identity_pub: [u8; 32],
    ephemeral_pub: [u8; 32],
    signature: Vec<u8>,
    supported_profiles: Vec<QualityProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller_reflexive_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    caller_local_addrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller_build_version: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct DirectCallAnswer {
    call_id: String,
    /// "Reject" | "AcceptTrusted" | "AcceptGeneric"
    accept_mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_pub: Option<[u8; 32]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ephemeral_pub: Option<[u8; 32]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chosen_profile: Option<QualityProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callee_reflexive_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    callee_local_addrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    callee_build_version: Option<String>,
}

impl DirectCallAnswer {
    fn new(call_id: &str, accept_mode: &str) -> DirectCallAnswer {
        DirectCallAnswer {
            call_id: call_id.to_string(),
            accept_mode: accept_mode.to_string(),
            identity_pub: None,
            ephemeral_pub: None,
            signature: None,
            chosen_profile: None,
            callee_reflexive_addr: None,
            callee_local_addrs: Vec::new(),
            callee_build_version: None,
        }
    }
}

#[derive(Deserialize, Debug)]
struct CallRinging {
    call_id: String,
}

#[derive(Deserialize, Debug)]
struct CallSetup {
    call_id: String,
    room: String,
    relay_addr: String,
    #[serde(default)]
    peer_direct_addr: Option<String>,
    #[serde(default)]
    peer_local_addrs: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Hangup {
    /// "Normal" | "Busy" | "Declined" | "Timeout" | "Error"
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct MediaPathReport {
    call_id: String,
    direct_ok: bool,
    #[serde(default)]
    race_winner: String,
}

/// What a "_signal" connection may receive from the relay; anything else fails to parse.
#[derive(Deserialize, Debug)]
enum SignalIn {
    RegisterPresenceAck(RegisterPresenceAck),
    Pong(PingPong),
    ReflectResponse(ReflectResponse),
    DirectCallOffer(DirectCallOffer),
    CallRinging(CallRinging),
    DirectCallAnswer(DirectCallAnswer),
    CallSetup(CallSetup),
    Hangup(Hangup),
    MediaPathReport(MediaPathReport),
}

fn signal_in_name(m: &SignalIn) -> &'static str {
    match m {
        SignalIn::RegisterPresenceAck(_) => "RegisterPresenceAck",
        SignalIn::Pong(_) => "Pong",
        SignalIn::ReflectResponse(_) => "ReflectResponse",
        SignalIn::DirectCallOffer(_) => "DirectCallOffer",
        SignalIn::CallRinging(_) => "CallRinging",
        SignalIn::DirectCallAnswer(_) => "DirectCallAnswer",
        SignalIn::CallSetup(_) => "CallSetup",
        SignalIn::Hangup(_) => "Hangup",
        SignalIn::MediaPathReport(_) => "MediaPathReport",
    }
}

fn frame_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out
}

fn short(s: &str) -> String {
    clip(s, 300)
}

/// `s`, cut at about `max` bytes.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

// ---------------------------------------------------------------------------------------
// Media datagrams

fn media_datagram(sender: u8, seq: u16) -> Vec<u8> {
    let mut d = Vec::with_capacity(DGRAM_LEN);
    // byte 0: V=0 T=0 CodecID=Opus24k(0) Q=0 FecRatio[6]=0; byte 1: FecRatio[5..0]=0
    d.push(0u8 << 2);
    d.push(0);
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&(u32::from(seq) * 20).to_be_bytes()); // timestamp, 20 ms frames
    d.extend_from_slice(&[0, 0, 0, 0]); // fec_block, fec_symbol, reserved, csrc_count
    d.extend_from_slice(PAYLOAD_MAGIC);
    d.push(sender);
    d.extend_from_slice(&seq.to_be_bytes());
    let mut i: u32 = 0;
    while d.len() < DGRAM_LEN {
        d.push((u32::from(sender) * 31 + u32::from(seq) * 7 + i) as u8);
        i += 1;
    }
    d
}

/// Which (sender, seq) a received datagram claims to be, if it is byte-exact.
fn parse_media(d: &[u8]) -> Result<(u8, u16), String> {
    if d.len() != DGRAM_LEN {
        return Err(format!("length {} (sent {})", d.len(), DGRAM_LEN));
    }
    if &d[12..16] != PAYLOAD_MAGIC {
        return Err(format!("no payload marker: {}", hex(d)));
    }
    let sender = d[16];
    let seq = u16::from_be_bytes([d[17], d[18]]);
    if d != media_datagram(sender, seq).as_slice() {
        return Err(format!(
            "bytes differ from what client #{} sent as seq {}: got {} want {}",
            sender,
            seq,
            hex(d),
            hex(&media_datagram(sender, seq))
        ));
    }
    Ok((sender, seq))
}

#[derive(Default)]
struct RxStats {
    /// sender index -> sequence numbers received, in arrival order
    per_sender: BTreeMap<u8, Vec<u16>>,
    invalid: Vec<String>,
    closed: Option<String>,
}

// ---------------------------------------------------------------------------------------
// One client

/// What a signal reader hands to the scenario; `T` is the set of signals the connection
/// accepts (`Incoming` on room connections, `SignalIn` on "_signal" ones).
enum Event<T> {
    Signal {
        stream_id: String,
        raw: String,
        msg: Result<T, String>,
    },
    Error(String),
}

struct Client {
    name: String,
    idx: u8,
    room: String,
    id: Identity,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    events: mpsc::UnboundedReceiver<Event<Incoming>>,
    rx: Arc<Mutex<RxStats>>,
    /// Problems found on relay-opened streams after their frame was read (no FIN, extra bytes).
    stream_problems: Arc<Mutex<Vec<String>>>,
    verbose: bool,
}

struct SkipVerify;

impl rustls::client::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::Certificate,
        _intermediates: &[rustls::Certificate],
        _server_name: &rustls::ServerName,
        _scts: &mut dyn Iterator<Item = &[u8]>,
        _ocsp_response: &[u8],
        _now: std::time::SystemTime,
    ) -> Result<rustls::client::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::ServerCertVerified::assertion())
    }
}

fn client_config() -> Res<quinn::ClientConfig> {
    let mut crypto = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_custom_certificate_verifier(Arc::new(SkipVerify))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![b"wzp".to_vec()];
    let mut transport = quinn::TransportConfig::default();
    transport
        .datagram_receive_buffer_size(Some(65536))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))))
        .receive_window(quinn::VarInt::from_u32(262_144))
        .stream_receive_window(quinn::VarInt::from_u32(65_536))
        .initial_rtt(Duration::from_millis(300));
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

fn new_endpoint() -> Res<quinn::Endpoint> {
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    quinn::Endpoint::client(bind).map_err(|e| format!("cannot bind a client UDP socket: {}", e))
}

/// Read one signal frame (u32 BE length + JSON) from a relay-opened stream.
async fn read_frame(recv: &mut quinn::RecvStream) -> Res<Vec<u8>> {
    let mut len_buf = [0u8; 4];
    within("signal length prefix", STEP, recv.read_exact(&mut len_buf))
        .await?
        .map_err(|e| format!("reading the length prefix: {}", e))?;
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > MAX_SIGNAL_LEN {
        return Err(format!("signal length {} exceeds 1 MiB", len));
    }
    let mut body = vec![0u8; len];
    within("signal body", STEP, recv.read_exact(&mut body))
        .await?
        .map_err(|e| format!("reading a {}-byte signal body: {}", len, e))?;
    Ok(body)
}

/// Accepts the relay's bidi streams in order (quinn hands them out by stream ID) and
/// forwards each frame, parsed, to the scenario. Ends when the connection ends.
fn spawn_signal_reader<T: DeserializeOwned + Send + 'static>(
    name: String,
    conn: quinn::Connection,
    tx: mpsc::UnboundedSender<Event<T>>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        loop {
            let (send, mut recv) = match conn.accept_bi().await {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = tx.send(Event::Error(format!("connection ended: {}", e)));
                    return;
                }
            };
            // Nothing is ever sent back on a signal stream: finish our half right away.
            drop(send);
            let stream_id = format!("{}", recv.id());
            let body = match read_frame(&mut recv).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Event::Error(format!("relay stream {}: {}", stream_id, e)));
                    continue;
                }
            };
            let raw = String::from_utf8_lossy(&body).into_owned();
            let msg = serde_json::from_slice::<T>(&body).map_err(|e| e.to_string());
            let _ = tx.send(Event::Signal {
                stream_id: stream_id.clone(),
                raw,
                msg,
            });
            // After the frame the relay must FIN its half, with no extra bytes.
            let problems = problems.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let mut extra = [0u8; 64];
                match timeout(Duration::from_secs(3), recv.read(&mut extra)).await {
                    Ok(Ok(None)) => {}
                    Ok(Ok(Some(n))) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} has {} extra byte(s) after the signal frame",
                        name, stream_id, n
                    )),
                    Ok(Err(quinn::ReadError::ConnectionLost(_))) => {}
                    Ok(Err(e)) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} ended with an error after the frame: {}",
                        name, stream_id, e
                    )),
                    Err(_) => problems.lock().unwrap().push(format!(
                        "{}: relay stream {} was not finished (no FIN within 3 s after the frame)",
                        name, stream_id
                    )),
                }
            });
        }
    });
}

fn spawn_datagram_reader(conn: quinn::Connection, rx: Arc<Mutex<RxStats>>) {
    tokio::spawn(async move {
        loop {
            match conn.read_datagram().await {
                Ok(d) => {
                    let mut st = rx.lock().unwrap();
                    match parse_media(&d) {
                        Ok((sender, seq)) => st.per_sender.entry(sender).or_insert_with(Vec::new).push(seq),
                        Err(e) => st.invalid.push(e),
                    }
                }
                Err(e) => {
                    rx.lock().unwrap().closed = Some(e.to_string());
                    return;
                }
            }
        }
    });
}

/// What a room connection does with the datagrams it receives.
enum DgramSink {
    /// Check each with parse_media() into the client's RxStats (the functional scenarios).
    Check,
    /// Time and count them for the load scenario; `room` is the receiver's room index.
    Load {
        shared: Arc<LoadShared>,
        rx: Arc<Mutex<LoadRx>>,
        room: usize,
    },
}

/// QUIC handshake with the given SNI (server name); the negotiated ALPN must be "wzp".
async fn connect_checked(
    name: &str,
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
) -> Res<quinn::Connection> {
    let connecting = endpoint
        .connect_with(client_config()?, addr, server_name)
        .map_err(|e| format!("{}: connect: {}", name, e))?;
    let conn = within(&format!("{}: QUIC handshake", name), STEP, connecting)
        .await?
        .map_err(|e| format!("{}: QUIC handshake failed: {}", name, e))?;
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    if alpn.as_deref() != Some(&b"wzp"[..]) {
        return Err(format!("{}: negotiated ALPN is {:?}, expected \"wzp\"", name, alpn));
    }
    Ok(conn)
}

/// Sends one signal the way real clients do: a fresh bidi stream, the frame, FIN.
async fn send_signal_on(conn: &quinn::Connection, name: &str, json: &[u8]) -> Res<()> {
    let (mut send, recv) = within(&format!("{}: open_bi", name), STEP, conn.open_bi())
        .await?
        .map_err(|e| format!("{}: open_bi: {}", name, e))?;
    // Like the real clients: the receive half of our own signal stream is never read.
    drop(recv);
    within(&format!("{}: writing a signal", name), STEP, send.write_all(&frame_json(json)))
        .await?
        .map_err(|e| format!("{}: writing a signal: {}", name, e))?;
    // finish() resolves once the relay has acknowledged the data and FIN. A relay that
    // has read the whole frame may legitimately answer STOP_SENDING(0) instead.
    match within(&format!("{}: finishing a signal stream", name), STEP, send.finish()).await? {
        Ok(()) => Ok(()),
        Err(quinn::WriteError::Stopped(code)) if code == quinn::VarInt::from_u32(0) => Ok(()),
        Err(e) => Err(format!("{}: finishing a signal stream: {}", name, e)),
    }
}

/// The next signal from a connection's reader, within `limit`: (message, stream id, raw JSON).
async fn recv_signal<T>(
    events: &mut mpsc::UnboundedReceiver<Event<T>>,
    name: &str,
    verbose: bool,
    expecting: &str,
    limit: Duration,
) -> Res<(T, String, String)> {
    let what = format!("{}: waiting for {}", name, expecting);
    let ev = within(&what, limit, events.recv()).await?;
    match ev {
        None => Err(format!("{}: signal reader ended while waiting for {}", name, expecting)),
        Some(Event::Error(e)) => Err(format!("{}: while waiting for {}: {}", name, expecting, e)),
        Some(Event::Signal { stream_id, raw, msg }) => match msg {
            Ok(m) => {
                if verbose {
                    say!("{}: stream {}: {}", name, stream_id, short(&raw));
                }
                Ok((m, stream_id, raw))
            }
            Err(e) => Err(format!(
                "{}: relay stream {} carries a signal this client cannot parse ({}): {}",
                name,
                stream_id,
                e,
                short(&raw)
            )),
        },
    }
}

/// Fails if a signal (or a reader error) is waiting that nobody expected.
fn no_pending_signal<T>(events: &mut mpsc::UnboundedReceiver<Event<T>>, name: &str) -> Res<()> {
    match events.try_recv() {
        Ok(Event::Signal { stream_id, raw, .. }) => Err(format!(
            "{}: unexpected extra signal on relay stream {}: {}",
            name,
            stream_id,
            short(&raw)
        )),
        Ok(Event::Error(e)) => Err(format!("{}: {}", name, e)),
        Err(_) => Ok(()),
    }
}

impl Client {
    /// QUIC handshake with SNI = room, then CallOffer; checks the CallAnswer.
    /// The identity is derived from the seed [0x10 + idx; 32].
    /// Returns the relay's identity public key and ephemeral key from the answer.
    async fn join(
        name: &str,
        idx: u8,
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
    ) -> Res<(Client, [u8; 32], [u8; 32])> {
        Client::join_with_seed(name, idx, &[0x10 + idx; 32], room, addr, endpoint, verbose).await
    }

    /// As `join`, with the identity derived from `seed` (`idx` still marks the datagrams).
    async fn join_with_seed(
        name: &str,
        idx: u8,
        seed: &[u8; 32],
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
    ) -> Res<(Client, [u8; 32], [u8; 32])> {
        Client::join_into(name, idx, seed, room, addr, endpoint, verbose, DgramSink::Check).await
    }

    /// As `join_with_seed`, with received datagrams handed to `sink`.
    #[allow(clippy::too_many_arguments)]
    async fn join_into(
        name: &str,
        idx: u8,
        seed: &[u8; 32],
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
        sink: DgramSink,
    ) -> Res<(Client, [u8; 32], [u8; 32])> {
        let client = Client::connect_into(name, idx, seed, room, addr, endpoint, verbose, sink).await?;
        let (json, eph) = client.call_offer()?;
        client.send_signal(&json).await?;
        say!("{}: CallOffer sent ({} bytes)", name, json.len());
        client.expect_call_answer(eph).await
    }

    /// QUIC handshake with SNI = room and the signal/datagram readers; nothing sent yet.
    async fn connect(
        name: &str,
        idx: u8,
        seed: &[u8; 32],
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
    ) -> Res<Client> {
        Client::connect_into(name, idx, seed, room, addr, endpoint, verbose, DgramSink::Check).await
    }

    /// As `connect`, with received datagrams handed to `sink`.
    #[allow(clippy::too_many_arguments)]
    async fn connect_into(
        name: &str,
        idx: u8,
        seed: &[u8; 32],
        room: &str,
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
        verbose: bool,
        sink: DgramSink,
    ) -> Res<Client> {
        let id = Identity::from_seed(seed);
        say!("{}: connecting to {} (SNI {}), fingerprint {}", name, addr, room, id.fingerprint);
        let conn = connect_checked(name, &endpoint, addr, room).await?;
        say!("{}: QUIC connected, ALPN wzp", name);

        let (tx, events) = mpsc::unbounded_channel();
        let stream_problems = Arc::new(Mutex::new(Vec::new()));
        let rx = Arc::new(Mutex::new(RxStats::default()));
        spawn_signal_reader(name.to_string(), conn.clone(), tx, stream_problems.clone());
        match sink {
            DgramSink::Check => spawn_datagram_reader(conn.clone(), rx.clone()),
            DgramSink::Load { shared, rx: load_rx, room } => spawn_load_reader(conn.clone(), shared, load_rx, room),
        }

        Ok(Client {
            name: name.to_string(),
            idx,
            // The relay lowercases the SNI (as rustls does upstream): that is the room.
            room: room.to_ascii_lowercase(),
            id,
            endpoint,
            conn,
            events,
            rx,
            stream_problems,
            verbose,
        })
    }

    /// A signed CallOffer of this client's identity (JSON) and its X25519 ephemeral secret.
    fn call_offer(&self) -> Res<(Vec<u8>, agreement::EphemeralPrivateKey)> {
        let name = &self.name;
        // CallOffer: X25519 ephemeral, Ed25519 signature over ephemeral_pub || "call-offer".
        let rng = ring_rand::SystemRandom::new();
        let eph = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .map_err(|_| format!("{}: X25519 key generation failed", name))?;
        let eph_pub_key = eph
            .compute_public_key()
            .map_err(|_| format!("{}: X25519 public key failed", name))?;
        let mut eph_pub = [0u8; 32];
        eph_pub.copy_from_slice(eph_pub_key.as_ref());
        let mut signed = eph_pub.to_vec();
        signed.extend_from_slice(b"call-offer");
        let sig = self.id.key.sign(&signed);
        let offer = Outgoing::CallOffer(CallOffer {
            identity_pub: self.id.public,
            ephemeral_pub: eph_pub,
            signature: sig.as_ref().to_vec(),
            supported_profiles: all_profiles(),
            alias: Some(name.to_string()),
        });
        let json = serde_json::to_vec(&offer).map_err(|e| format!("{}: encoding CallOffer: {}", name, e))?;
        Ok((json, eph))
    }

    /// The first relay signal must be a CallAnswer that verifies; `eph` is the offer's
    /// ephemeral secret.
    async fn expect_call_answer(
        mut self,
        eph: agreement::EphemeralPrivateKey,
    ) -> Res<(Client, [u8; 32], [u8; 32])> {
        let name = self.name.clone();
        let answer = match self.next_signal("CallAnswer", STEP).await? {
            Incoming::CallAnswer(a) => a,
            other => {
                return Err(format!(
                    "{}: first relay signal is {}, expected CallAnswer",
                    name,
                    incoming_name(&other)
                ))
            }
        };
        if answer.signature.len() != 64 {
            return Err(format!(
                "{}: CallAnswer signature is {} bytes, expected 64",
                name,
                answer.signature.len()
            ));
        }
        let mut answer_signed = answer.ephemeral_pub.to_vec();
        answer_signed.extend_from_slice(b"call-answer");
        signature::UnparsedPublicKey::new(&signature::ED25519, &answer.identity_pub[..])
            .verify(&answer_signed, &answer.signature)
            .map_err(|_| {
                format!(
                    "{}: CallAnswer signature does not verify under its identity_pub {} over ephemeral_pub || \"call-answer\"",
                    name,
                    hex(&answer.identity_pub)
                )
            })?;
        if answer.chosen_profile != profile_good() {
            return Err(format!(
                "{}: CallAnswer chosen_profile is {:?}, expected GOOD {:?}",
                name,
                answer.chosen_profile,
                profile_good()
            ));
        }
        // The relay's ephemeral key must be a usable X25519 public key (like the client does).
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, answer.ephemeral_pub);
        agreement::agree_ephemeral(eph, &peer, (), |shared| {
            if shared.iter().all(|b| *b == 0) {
                Err(())
            } else {
                Ok(())
            }
        })
        .map_err(|_| format!("{}: CallAnswer ephemeral_pub is not a usable X25519 key", name))?;
        say!(
            "{}: CallAnswer OK (relay fingerprint {}, signature verified, profile GOOD)",
            name,
            fingerprint(&answer.identity_pub)
        );
        Ok((self, answer.identity_pub, answer.ephemeral_pub))
    }

    async fn send_signal(&self, json: &[u8]) -> Res<()> {
        send_signal_on(&self.conn, &self.name, json).await
    }

    /// The next signal from the relay, within `limit`.
    async fn next_signal(&mut self, expecting: &str, limit: Duration) -> Res<Incoming> {
        let (m, _, _) = recv_signal(&mut self.events, &self.name, self.verbose, expecting, limit).await?;
        Ok(m)
    }

    /// The next signal must be a RoomUpdate listing exactly `expected` (fingerprint, alias)
    /// in join order.
    async fn expect_room_update(&mut self, expected: &[(String, String)]) -> Res<()> {
        let what = format!("RoomUpdate with count {}", expected.len());
        let upd = match self.next_signal(&what, STEP).await? {
            Incoming::RoomUpdate(u) => u,
            other => {
                return Err(format!(
                    "{}: expected {}, got {}",
                    self.name,
                    what,
                    incoming_name(&other)
                ))
            }
        };
        let listed: Vec<String> = upd
            .participants
            .iter()
            .map(|p| format!("{}({})", p.alias.clone().unwrap_or_else(|| "null".to_string()), p.fingerprint))
            .collect();
        let want: Vec<String> = expected.iter().map(|(fp, a)| format!("{}({})", a, fp)).collect();
        if upd.count as usize != expected.len() {
            return Err(format!(
                "{}: RoomUpdate count {} (participants {:?}), expected count {} {:?}",
                self.name,
                upd.count,
                listed,
                expected.len(),
                want
            ));
        }
        if listed != want {
            return Err(format!(
                "{}: RoomUpdate participants {:?}, expected (join order) {:?}",
                self.name, listed, want
            ));
        }
        for p in &upd.participants {
            if p.relay_label.is_some() {
                return Err(format!(
                    "{}: local participant {} has relay_label {:?}, expected null",
                    self.name, p.fingerprint, p.relay_label
                ));
            }
        }
        say!("{}: RoomUpdate count {} {:?}", self.name, upd.count, want);
        Ok(())
    }

    /// Fails if a signal (or a reader error) is waiting that nobody expected.
    fn expect_no_pending_signal(&mut self) -> Res<()> {
        no_pending_signal(&mut self.events, &self.name)
    }

    fn participant(&self) -> (String, String) {
        (self.id.fingerprint.clone(), self.name.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Scenario "fanout"

struct Opts {
    addr: Option<SocketAddr>,
    scenario: String,
    packets: u16,
    cycles: u32,
    relay_fp: Option<String>,
    shared_endpoint: bool,
    verbose: bool,
    // Scenario "load"
    rooms: usize,
    participants: usize,
    speakers: Option<usize>,
    rate: u32,
    size: usize,
    duration: f64,
    warmup: f64,
    concurrency: usize,
    room_prefix: String,
    relay_pid: Option<u32>,
    runtime_threads: usize,
}

async fn fanout(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    let shared = if o.shared_endpoint { Some(new_endpoint()?) } else { None };
    let plan: [(&str, &str); 5] = [
        ("A", "interop-a"),
        ("B", "interop-a"),
        // C dials with a mixed-case SNI: the relay must lowercase it (spec 1.2), so C
        // lands in the same room as A and B.
        ("C", "Interop-A"),
        ("D", "interop-b"),
        ("E", "interop-b"),
    ];
    let mut clients: Vec<Client> = Vec::new();
    let mut relay_pub: Option<[u8; 32]> = None;
    let mut ephemerals: Vec<[u8; 32]> = Vec::new();

    // Joins, one after the other; everyone already in the room must see each join.
    for (i, (name, room)) in plan.iter().enumerate() {
        let ep = match &shared {
            Some(e) => e.clone(),
            None => new_endpoint()?,
        };
        let (mut c, rp, re) = Client::join(name, i as u8, room, addr, ep, o.verbose).await?;
        match relay_pub {
            None => {
                let fp = fingerprint(&rp);
                if let Some(want) = &o.relay_fp {
                    if &fp != want {
                        return Err(format!(
                            "{}: CallAnswer identity fingerprint {} differs from the relay's logged identity {}",
                            name, fp, want
                        ));
                    }
                }
                relay_pub = Some(rp);
            }
            Some(prev) => {
                if prev != rp {
                    return Err(format!(
                        "{}: CallAnswer identity_pub {} differs from the earlier answers' {}",
                        name,
                        hex(&rp),
                        hex(&prev)
                    ));
                }
            }
        }
        if ephemerals.contains(&re) {
            return Err(format!(
                "{}: the relay reused an ephemeral_pub {} from an earlier CallAnswer",
                name,
                hex(&re)
            ));
        }
        ephemerals.push(re);

        let mut members: Vec<(String, String)> = clients
            .iter()
            .filter(|m| m.room == c.room)
            .map(|m| m.participant())
            .collect();
        members.push(c.participant());
        c.expect_room_update(&members).await?;
        for m in clients.iter_mut().filter(|m| m.room == c.room) {
            m.expect_room_update(&members).await?;
        }
        clients.push(c);
    }
    // No one may have heard of the other room's joins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in clients.iter_mut() {
        c.expect_no_pending_signal()?;
    }

    // Media: every client sends N datagrams at ~100/s, all at once.
    for c in &clients {
        match c.conn.max_datagram_size() {
            Some(n) if n >= DGRAM_LEN => {}
            other => {
                return Err(format!(
                    "{}: cannot send {}-byte datagrams: max_datagram_size() = {:?} (does the relay advertise max_datagram_frame_size?)",
                    c.name, DGRAM_LEN, other
                ))
            }
        }
    }
    say!("media: every client sends {} datagrams of {} bytes at ~100/s", o.packets, DGRAM_LEN);
    let mut senders = Vec::new();
    for c in &clients {
        let conn = c.conn.clone();
        let idx = c.idx;
        let name = c.name.clone();
        let n = o.packets;
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for seq in 0..n {
                tick.tick().await;
                if let Err(e) = conn.send_datagram(Bytes::from(media_datagram(idx, seq))) {
                    return Err(format!("{}: send_datagram seq {}: {}", name, seq, e));
                }
            }
            Ok(())
        }));
    }
    for s in senders {
        let r = within("media senders", Duration::from_secs(10), s).await?;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("media sender task failed: {}", e)),
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let mut problems = Vec::new();
    for r in &clients {
        let st = r.rx.lock().unwrap();
        let mut line = Vec::new();
        for s in &clients {
            let got = st.per_sender.get(&s.idx).cloned().unwrap_or_default();
            let want = if s.room == r.room && s.idx != r.idx { o.packets as usize } else { 0 };
            let mut uniq = got.clone();
            uniq.sort_unstable();
            uniq.dedup();
            line.push(format!("{}:{}", s.name, got.len()));
            if got.len() != want || uniq.len() != got.len() {
                let missing: Vec<u16> = if want > 0 {
                    (0..o.packets).filter(|q| !uniq.contains(q)).collect()
                } else {
                    Vec::new()
                };
                problems.push(format!(
                    "{} received {} datagrams from {} (expected {}; {} duplicates; missing seqs {:?})",
                    r.name,
                    got.len(),
                    s.name,
                    want,
                    got.len() - uniq.len(),
                    missing
                ));
            }
        }
        for (k, v) in &st.per_sender {
            if usize::from(*k) >= clients.len() {
                problems.push(format!("{} received {} datagrams from unknown sender #{}", r.name, v.len(), k));
            }
        }
        for e in st.invalid.iter().take(3) {
            problems.push(format!("{} received a corrupted datagram: {}", r.name, e));
        }
        if st.invalid.len() > 3 {
            problems.push(format!("{} received {} corrupted datagrams in all", r.name, st.invalid.len()));
        }
        if let Some(e) = &st.closed {
            problems.push(format!("{}: connection closed during the media phase: {}", r.name, e));
        }
        say!("media: {} received from [{}]", r.name, line.join(" "));
    }
    if !problems.is_empty() {
        return Err(format!("media fan-out wrong:\n  {}", problems.join("\n  ")));
    }
    say!("media: every client got exactly the other same-room members' datagrams");

    // D leaves: E must get RoomUpdate [E]; nobody else hears anything.
    for c in clients.iter_mut() {
        c.expect_no_pending_signal()?;
    }
    {
        let d = &clients[3];
        say!("D: closing its connection (code 0, \"hangup\")");
        d.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    }
    let e_member = clients[4].participant();
    clients[4].expect_room_update(&[e_member]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in clients.iter_mut().filter(|c| c.name != "D") {
        c.expect_no_pending_signal()?;
    }

    // Each relay signal stream must have been finished cleanly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut stream_problems = Vec::new();
    for c in &clients {
        stream_problems.extend(c.stream_problems.lock().unwrap().iter().cloned());
    }
    if !stream_problems.is_empty() {
        return Err(format!("relay signal streams:\n  {}", stream_problems.join("\n  ")));
    }

    // Leave cleanly so the relay sees every close before it is stopped.
    for c in &clients {
        if let Some(e) = c.conn.close_reason() {
            match e {
                quinn::ConnectionError::LocallyClosed => {}
                other => {
                    return Err(format!("{}: connection was closed by the relay: {}", c.name, other));
                }
            }
        }
    }
    for c in &clients {
        if c.name != "D" {
            c.conn.close(quinn::VarInt::from_u32(0), b"hangup");
        }
    }
    for c in &clients {
        let _ = timeout(Duration::from_secs(2), c.endpoint.wait_idle()).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario "churn"

async fn churn(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    let room = "interop-churn";
    let shared = if o.shared_endpoint { Some(new_endpoint()?) } else { None };
    let ep = match &shared {
        Some(e) => e.clone(),
        None => new_endpoint()?,
    };
    let (mut a, _, _) = Client::join("A", 0, room, addr, ep, o.verbose).await?;
    let a_member = a.participant();
    a.expect_room_update(&[a_member.clone()]).await?;
    say!("churn: B joins and leaves {} times (progress every 10)", o.cycles);
    for i in 0..o.cycles {
        QUIET.store(!o.verbose, Ordering::Relaxed);
        let ep = match &shared {
            Some(e) => e.clone(),
            None => new_endpoint()?,
        };
        let step = async {
            let (mut b, _, _) = Client::join("B", 1, room, addr, ep.clone(), o.verbose).await?;
            let both = [a_member.clone(), b.participant()];
            b.expect_room_update(&both).await?;
            a.expect_room_update(&both).await?;
            b.conn.close(quinn::VarInt::from_u32(0), b"hangup");
            a.expect_room_update(&[a_member.clone()]).await?;
            let problems = b.stream_problems.lock().unwrap().clone();
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
            Ok::<(), String>(())
        };
        let r = step.await;
        QUIET.store(false, Ordering::Relaxed);
        if let Err(e) = r {
            return Err(format!(
                "cycle {} of {} (A has been sent {} relay streams so far): {}",
                i + 1,
                o.cycles,
                1 + 2 * i + 1,
                e
            ));
        }
        if shared.is_none() {
            let _ = timeout(Duration::from_millis(500), ep.wait_idle()).await;
        }
        if (i + 1) % 10 == 0 {
            say!("churn: {} cycles done, A has read {} RoomUpdates", i + 1, 2 * (i + 1) + 1);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.expect_no_pending_signal()?;
    let problems = a.stream_problems.lock().unwrap().clone();
    if !problems.is_empty() {
        return Err(format!("relay signal streams:\n  {}", problems.join("\n  ")));
    }
    if let Some(e) = a.conn.close_reason() {
        return Err(format!("A: connection was closed by the relay: {}", e));
    }
    a.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    let _ = timeout(Duration::from_secs(2), a.endpoint.wait_idle()).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario "signal": presence and direct calls on "_signal" connections (spec 4.2, 4.3)

const SEED_A: [u8; 32] = [0x51; 32];
const SEED_B: [u8; 32] = [0x52; 32];
const SEED_C: [u8; 32] = [0x53; 32];
const CALL1: &str = "interop-1";
const CALL2: &str = "interop-2";
/// Datagrams each party of the call sends through the call room.
const CALL_PACKETS: u16 = 20;

/// Takes the named variant out of a (signal, raw JSON) pair from `SignalConn::expect*`.
macro_rules! variant {
    ($pair:expr, $v:ident) => {
        match $pair {
            (SignalIn::$v(x), raw) => (x, raw),
            (other, raw) => {
                return Err(format!(
                    "expected {}, got {}: {}",
                    stringify!($v),
                    signal_in_name(&other),
                    clip(&raw, 2000)
                ))
            }
        }
    };
}

/// `got` must equal `want`; the error quotes the signal's raw JSON.
fn check_field<T: PartialEq + std::fmt::Debug>(who: &str, field: &str, got: &T, want: &T, raw: &str) -> Res<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{}: {} is {:?}, expected {:?}, in {}", who, field, got, want, clip(raw, 2000)))
    }
}

/// A "_signal" connection on its own UDP socket, as an app keeps one for presence and calls.
struct SignalConn {
    name: String,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    events: mpsc::UnboundedReceiver<Event<SignalIn>>,
    stream_problems: Arc<Mutex<Vec<String>>>,
    verbose: bool,
}

impl SignalConn {
    /// New endpoint, QUIC handshake with SNI "_signal" and ALPN "wzp", signal reader.
    async fn open(name: &str, addr: SocketAddr, verbose: bool) -> Res<SignalConn> {
        let endpoint = new_endpoint()?;
        let conn = connect_checked(name, &endpoint, addr, "_signal").await?;
        let (tx, events) = mpsc::unbounded_channel();
        let stream_problems = Arc::new(Mutex::new(Vec::new()));
        spawn_signal_reader(name.to_string(), conn.clone(), tx, stream_problems.clone());
        let c = SignalConn {
            name: name.to_string(),
            endpoint,
            conn,
            events,
            stream_problems,
            verbose,
        };
        say!("{}: QUIC connected to {} with SNI _signal, ALPN wzp, from {}", name, addr, c.local_addr()?);
        Ok(c)
    }

    fn local_addr(&self) -> Res<SocketAddr> {
        self.endpoint
            .local_addr()
            .map_err(|e| format!("{}: local address: {}", self.name, e))
    }

    async fn send(&self, msg: &Outgoing) -> Res<()> {
        let json = serde_json::to_vec(msg).map_err(|e| format!("{}: encoding {:?}: {}", self.name, msg, e))?;
        if self.verbose {
            say!("{}: sending {}", self.name, short(&String::from_utf8_lossy(&json)));
        }
        send_signal_on(&self.conn, &self.name, &json).await
    }

    /// The next signal must be a `want`: (message, raw JSON).
    async fn expect(&mut self, want: &str) -> Res<(SignalIn, String)> {
        let mut got = self.expect_all(&[want]).await?;
        got.pop().ok_or_else(|| "internal: expect_all returned nothing".to_string())
    }

    /// The next two signals must be one `first` and one `second`, in either order: the
    /// relay sends each on its own stream, and an application may see them either way
    /// round. Returned as (first, second).
    async fn expect2(&mut self, first: &str, second: &str) -> Res<((SignalIn, String), (SignalIn, String))> {
        let mut got = self.expect_all(&[first, second]).await?;
        match (got.pop(), got.pop()) {
            (Some(s), Some(f)) => Ok((f, s)),
            _ => Err("internal: expect_all returned too little".to_string()),
        }
    }

    /// The next signals must be exactly one of each type in `wants`, in any order;
    /// returned in the order of `wants`. Anything else fails with its raw JSON.
    async fn expect_all(&mut self, wants: &[&str]) -> Res<Vec<(SignalIn, String)>> {
        let expecting = wants.join(" and ");
        let mut slots: Vec<Option<(SignalIn, String)>> = wants.iter().map(|_| None).collect();
        for _ in 0..wants.len() {
            let (m, stream_id, raw) =
                recv_signal(&mut self.events, &self.name, self.verbose, &expecting, STEP).await?;
            let got = signal_in_name(&m);
            match wants.iter().position(|w| *w == got) {
                Some(i) if slots[i].is_none() => slots[i] = Some((m, raw)),
                _ => {
                    return Err(format!(
                        "{}: expected {}, got {} on relay stream {}: {}",
                        self.name,
                        expecting,
                        got,
                        stream_id,
                        clip(&raw, 2000)
                    ))
                }
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// RegisterPresence with an empty signature (as today's apps); the Ack must say success
    /// and name the relay's build, which is returned.
    async fn register(&mut self, identity_pub: [u8; 32], alias: Option<&str>) -> Res<String> {
        self.send(&Outgoing::RegisterPresence(RegisterPresence {
            identity_pub,
            signature: Vec::new(),
            alias: alias.map(|a| a.to_string()),
        }))
        .await?;
        let (ack, raw) = variant!(self.expect("RegisterPresenceAck").await?, RegisterPresenceAck);
        if !ack.success {
            return Err(format!("{}: registration refused: {}", self.name, short(&raw)));
        }
        match ack.relay_build {
            Some(b) if !b.is_empty() => {
                say!(
                    "{}: registered {} (alias {}), relay_build {:?}",
                    self.name,
                    fingerprint(&identity_pub),
                    alias.map(|a| format!("{:?}", a)).unwrap_or_else(|| "null".to_string()),
                    b
                );
                Ok(b)
            }
            _ => Err(format!("{}: RegisterPresenceAck without a relay_build: {}", self.name, short(&raw))),
        }
    }

    /// "Reflect" -> ReflectResponse, whose observed_addr must be this socket's address.
    async fn reflect(&mut self) -> Res<()> {
        let local = self.local_addr()?.to_string();
        self.send(&Outgoing::Reflect).await?;
        let (r, raw) = variant!(self.expect("ReflectResponse").await?, ReflectResponse);
        check_field(&self.name, "ReflectResponse.observed_addr", &r.observed_addr, &local, &raw)?;
        say!("{}: Reflect -> observed_addr {} (its own socket)", self.name, r.observed_addr);
        Ok(())
    }

    fn expect_no_pending_signal(&mut self) -> Res<()> {
        no_pending_signal(&mut self.events, &self.name)
    }

    /// No unfinished relay stream so far, and the relay has not closed the connection.
    fn check_healthy(&self) -> Res<()> {
        let problems = self.stream_problems.lock().unwrap().clone();
        if !problems.is_empty() {
            return Err(format!("relay signal streams:\n  {}", problems.join("\n  ")));
        }
        match self.conn.close_reason() {
            None => Ok(()),
            Some(e) => Err(format!("{}: connection was closed by the relay: {}", self.name, e)),
        }
    }
}

/// Sends `n` media datagrams at ~100/s, marked with the client's idx.
async fn send_media(c: &Client, n: u16) -> Res<()> {
    match c.conn.max_datagram_size() {
        Some(m) if m >= DGRAM_LEN => {}
        other => {
            return Err(format!(
                "{}: cannot send {}-byte datagrams: max_datagram_size() = {:?}",
                c.name, DGRAM_LEN, other
            ))
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for seq in 0..n {
        tick.tick().await;
        c.conn
            .send_datagram(Bytes::from(media_datagram(c.idx, seq)))
            .map_err(|e| format!("{}: send_datagram seq {}: {}", c.name, seq, e))?;
    }
    Ok(())
}

/// How many distinct datagrams `r` has received from `s`.
fn media_count(r: &Client, s: &Client) -> usize {
    let st = r.rx.lock().unwrap();
    let mut got = st.per_sender.get(&s.idx).cloned().unwrap_or_default();
    got.sort_unstable();
    got.dedup();
    got.len()
}

/// `r` must have received each of `s`'s `n` datagrams exactly once, byte-exact, and
/// nothing else.
fn media_problems(r: &Client, s: &Client, n: u16) -> Vec<String> {
    let st = r.rx.lock().unwrap();
    let mut problems = Vec::new();
    let got = st.per_sender.get(&s.idx).cloned().unwrap_or_default();
    let mut uniq = got.clone();
    uniq.sort_unstable();
    uniq.dedup();
    if got.len() != usize::from(n) || uniq.len() != got.len() {
        let missing: Vec<u16> = (0..n).filter(|q| !uniq.contains(q)).collect();
        problems.push(format!(
            "{} received {} datagrams from {} (expected {}; {} duplicates; missing seqs {:?})",
            r.name,
            got.len(),
            s.name,
            n,
            got.len() - uniq.len(),
            missing
        ));
    }
    for (k, v) in &st.per_sender {
        if *k != s.idx {
            problems.push(format!("{} received {} datagrams from sender #{}", r.name, v.len(), k));
        }
    }
    for e in st.invalid.iter().take(3) {
        problems.push(format!("{} received a corrupted datagram: {}", r.name, e));
    }
    if let Some(e) = &st.closed {
        problems.push(format!("{}: connection closed during the media phase: {}", r.name, e));
    }
    say!("media: {} received {} of {}'s {} datagrams", r.name, got.len(), s.name, n);
    problems
}

/// What an app sends when the relay path won the race.
fn path_report(call_id: &str) -> Outgoing {
    Outgoing::MediaPathReport(MediaPathReport {
        call_id: call_id.to_string(),
        direct_ok: false,
        race_winner: "Relay".to_string(),
    })
}

/// The peer's MediaPathReport for CALL1, forwarded by the relay.
async fn expect_path_report(c: &mut SignalConn) -> Res<()> {
    let (r, raw) = variant!(c.expect("MediaPathReport").await?, MediaPathReport);
    check_field(&c.name, "MediaPathReport.call_id", &r.call_id.as_str(), &CALL1, &raw)?;
    check_field(&c.name, "MediaPathReport.direct_ok", &r.direct_ok, &false, &raw)?;
    check_field(&c.name, "MediaPathReport.race_winner", &r.race_winner.as_str(), &"Relay", &raw)?;
    say!("{}: got the peer's MediaPathReport (direct_ok false, race_winner Relay)", c.name);
    Ok(())
}

/// A CallSetup for CALL1 with the given peer addresses; relay_addr must be `relay`.
fn check_setup(who: &str, s: &CallSetup, raw: &str, relay: &str, direct: &str, local: &str) -> Res<()> {
    check_field(who, "CallSetup.call_id", &s.call_id.as_str(), &CALL1, raw)?;
    check_field(who, "CallSetup.room", &s.room, &format!("call-{}", CALL1), raw)?;
    check_field(who, "CallSetup.relay_addr", &s.relay_addr.as_str(), &relay, raw)?;
    check_field(who, "CallSetup.peer_direct_addr", &s.peer_direct_addr.as_deref(), &Some(direct), raw)?;
    check_field(who, "CallSetup.peer_local_addrs", &s.peer_local_addrs, &vec![local.to_string()], raw)?;
    say!(
        "{}: CallSetup room {} relay_addr {} peer {} (LAN {:?})",
        who,
        s.room,
        s.relay_addr,
        direct,
        s.peer_local_addrs
    );
    Ok(())
}

async fn signal(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    let relay_addr = addr.to_string();
    let id_a = Identity::from_seed(&SEED_A);
    let id_b = Identity::from_seed(&SEED_B);

    // 1-2. Presence: A and B each on their own "_signal" connection.
    let mut a = SignalConn::open("A/signal", addr, o.verbose).await?;
    let mut b = SignalConn::open("B/signal", addr, o.verbose).await?;
    a.register(id_a.public, Some("A")).await?;
    b.register(id_b.public, Some("B")).await?;

    // 3. Ping -> Pong with the same timestamp.
    a.send(&Outgoing::Ping(PingPong { timestamp_ms: 123_456_789 })).await?;
    let (pong, raw) = variant!(a.expect("Pong").await?, Pong);
    check_field("A/signal", "Pong.timestamp_ms", &pong.timestamp_ms, &123_456_789, &raw)?;
    say!("A/signal: Ping -> Pong {}", pong.timestamp_ms);

    // 4. Reflect on the presence connection.
    a.reflect().await?;

    // 5. A throw-away reflect probe, as the apps make: all-zero key, no alias.
    let mut probe = SignalConn::open("probe", addr, o.verbose).await?;
    probe.register([0u8; 32], None).await?;
    probe.reflect().await?;
    probe.check_healthy()?;
    probe.conn.close(0u32.into(), b"");
    say!("probe: closed");

    // 6. A calls B, claiming to be someone else: B must see A's registered fingerprint.
    a.send(&Outgoing::DirectCallOffer(DirectCallOffer {
        caller_fingerprint: "someone-else".to_string(),
        caller_alias: Some("A".to_string()),
        target_fingerprint: id_b.fingerprint.clone(),
        call_id: CALL1.to_string(),
        identity_pub: id_a.public,
        ephemeral_pub: [0u8; 32],
        signature: Vec::new(),
        supported_profiles: Vec::new(),
        caller_reflexive_addr: Some("198.51.100.1:5000".to_string()),
        caller_local_addrs: vec!["192.168.1.1:5000".to_string()],
        caller_build_version: None,
    }))
    .await?;
    say!("A/signal: DirectCallOffer {} to B sent (caller_fingerprint claims \"someone-else\")", CALL1);
    let (offer, raw) = variant!(b.expect("DirectCallOffer").await?, DirectCallOffer);
    let who = "B/signal";
    check_field(who, "DirectCallOffer.caller_fingerprint", &offer.caller_fingerprint, &id_a.fingerprint, &raw)?;
    check_field(who, "DirectCallOffer.call_id", &offer.call_id.as_str(), &CALL1, &raw)?;
    check_field(who, "DirectCallOffer.target_fingerprint", &offer.target_fingerprint, &id_b.fingerprint, &raw)?;
    check_field(who, "DirectCallOffer.caller_alias", &offer.caller_alias.as_deref(), &Some("A"), &raw)?;
    check_field(who, "DirectCallOffer.identity_pub", &offer.identity_pub, &id_a.public, &raw)?;
    check_field(
        who,
        "DirectCallOffer.caller_reflexive_addr",
        &offer.caller_reflexive_addr.as_deref(),
        &Some("198.51.100.1:5000"),
        &raw,
    )?;
    check_field(
        who,
        "DirectCallOffer.caller_local_addrs",
        &offer.caller_local_addrs,
        &vec!["192.168.1.1:5000".to_string()],
        &raw,
    )?;
    say!(
        "B/signal: DirectCallOffer {} from {} (the relay put A's real fingerprint)",
        offer.call_id,
        offer.caller_fingerprint
    );
    let (ringing, raw) = variant!(a.expect("CallRinging").await?, CallRinging);
    check_field("A/signal", "CallRinging.call_id", &ringing.call_id.as_str(), &CALL1, &raw)?;
    say!("A/signal: CallRinging {}", ringing.call_id);

    // 7. B accepts: A gets the answer and a CallSetup, B a CallSetup, with each other's addresses.
    let mut accept = DirectCallAnswer::new(CALL1, "AcceptTrusted");
    accept.callee_reflexive_addr = Some("203.0.113.2:6000".to_string());
    accept.callee_local_addrs = vec!["10.0.0.2:6000".to_string()];
    b.send(&Outgoing::DirectCallAnswer(accept)).await?;
    say!("B/signal: DirectCallAnswer {} AcceptTrusted sent", CALL1);
    let (first, second) = a.expect2("DirectCallAnswer", "CallSetup").await?;
    let (answer, raw) = variant!(first, DirectCallAnswer);
    let who = "A/signal";
    check_field(who, "DirectCallAnswer.call_id", &answer.call_id.as_str(), &CALL1, &raw)?;
    check_field(who, "DirectCallAnswer.accept_mode", &answer.accept_mode.as_str(), &"AcceptTrusted", &raw)?;
    check_field(
        who,
        "DirectCallAnswer.callee_reflexive_addr",
        &answer.callee_reflexive_addr.as_deref(),
        &Some("203.0.113.2:6000"),
        &raw,
    )?;
    check_field(
        who,
        "DirectCallAnswer.callee_local_addrs",
        &answer.callee_local_addrs,
        &vec!["10.0.0.2:6000".to_string()],
        &raw,
    )?;
    say!("A/signal: DirectCallAnswer {} {}", answer.call_id, answer.accept_mode);
    let (setup, raw) = variant!(second, CallSetup);
    check_setup(who, &setup, &raw, &relay_addr, "203.0.113.2:6000", "10.0.0.2:6000")?;
    let (setup, raw) = variant!(b.expect("CallSetup").await?, CallSetup);
    check_setup("B/signal", &setup, &raw, &relay_addr, "198.51.100.1:5000", "192.168.1.1:5000")?;

    // 8. Both join the call room with their own identities and exchange media.
    let room = format!("call-{}", CALL1);
    let (mut ra, relay_pub, _) =
        Client::join_with_seed("A", 0, &SEED_A, &room, addr, new_endpoint()?, o.verbose).await?;
    if let Some(want) = &o.relay_fp {
        let fp = fingerprint(&relay_pub);
        if &fp != want {
            return Err(format!(
                "A: CallAnswer identity fingerprint {} differs from the relay's logged identity {}",
                fp, want
            ));
        }
    }
    let a_member = ra.participant();
    ra.expect_room_update(&[a_member.clone()]).await?;
    let (mut rb, _, _) =
        Client::join_with_seed("B", 1, &SEED_B, &room, addr, new_endpoint()?, o.verbose).await?;
    let both = [a_member, rb.participant()];
    rb.expect_room_update(&both).await?;
    ra.expect_room_update(&both).await?;

    say!("media: A and B each send {} datagrams of {} bytes at ~100/s", CALL_PACKETS, DGRAM_LEN);
    let (sa, sb) = within(
        "media senders",
        Duration::from_secs(5),
        async { tokio::join!(send_media(&ra, CALL_PACKETS), send_media(&rb, CALL_PACKETS)) },
    )
    .await?;
    sa?;
    sb?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline
        && (media_count(&ra, &rb) < usize::from(CALL_PACKETS) || media_count(&rb, &ra) < usize::from(CALL_PACKETS))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // late duplicates would show up
    let mut problems = media_problems(&ra, &rb, CALL_PACKETS);
    problems.extend(media_problems(&rb, &ra, CALL_PACKETS));
    if !problems.is_empty() {
        return Err(format!("media through {} wrong:\n  {}", room, problems.join("\n  ")));
    }

    // 9. C, not a party of the call, must be refused by the call room.
    let id_c_fp = Identity::from_seed(&SEED_C).fingerprint;
    let mut rc = Client::connect("C", 2, &SEED_C, &room, addr, new_endpoint()?, o.verbose).await?;
    let (json, _eph) = rc.call_offer()?;
    if let Err(e) = rc.send_signal(&json).await {
        // The relay may close before it acknowledges the offer's stream.
        if rc.conn.close_reason().is_none() {
            return Err(e);
        }
    }
    say!("C: CallOffer sent ({} bytes) as {}, not a party of {}", json.len(), id_c_fp, CALL1);
    let closed = within("C: waiting for the relay to close the connection", STEP, rc.conn.closed()).await?;
    // Whatever the reader got before the close (it ends after it): no signal, so no
    // CallAnswer, may be among it.
    loop {
        match within("C: signal reader to end", STEP, rc.events.recv()).await? {
            None => break,
            Some(Event::Error(_)) => continue,
            Some(Event::Signal { stream_id, raw, .. }) => {
                return Err(format!(
                    "C: the relay sent a signal to a non-party of the call on stream {} before closing: {}",
                    stream_id,
                    short(&raw)
                ))
            }
        }
    }
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            if !reason.contains("not a party of call") {
                return Err(format!(
                    "C: closed with code {} reason {:?}, expected a reason containing \"not a party of call\"",
                    close.error_code, reason
                ));
            }
            say!("C: refused by the relay: application close code {}, reason {:?}", close.error_code, reason);
        }
        other => {
            return Err(format!(
                "C: connection ended with \"{}\", expected an application close \"not a party of call ...\"",
                other
            ))
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    ra.expect_no_pending_signal()?;
    rb.expect_no_pending_signal()?;
    a.expect_no_pending_signal()?;
    b.expect_no_pending_signal()?;

    // 10. Media path reports, forwarded to the peer.
    a.send(&path_report(CALL1)).await?;
    b.send(&path_report(CALL1)).await?;
    expect_path_report(&mut a).await?;
    expect_path_report(&mut b).await?;

    // The call room connections are still fine; the apps leave the room on hang-up.
    for c in [&ra, &rb] {
        let problems = c.stream_problems.lock().unwrap().clone();
        if !problems.is_empty() {
            return Err(format!("relay signal streams:\n  {}", problems.join("\n  ")));
        }
        if let Some(e) = c.conn.close_reason() {
            return Err(format!("{}: connection was closed by the relay: {}", c.name, e));
        }
    }

    // 11. A hangs up.
    a.send(&Outgoing::Hangup(Hangup {
        reason: "Normal".to_string(),
        call_id: Some(CALL1.to_string()),
    }))
    .await?;
    say!("A/signal: Hangup {} sent", CALL1);
    let (h, raw) = variant!(b.expect("Hangup").await?, Hangup);
    check_field("B/signal", "Hangup.call_id", &h.call_id.as_deref(), &Some(CALL1), &raw)?;
    check_field("B/signal", "Hangup.reason", &h.reason.as_str(), &"Normal", &raw)?;
    say!("B/signal: Hangup {} ({})", CALL1, h.reason);
    ra.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    rb.conn.close(quinn::VarInt::from_u32(0), b"hangup");

    // 12. B calls A, A rejects: B gets Hangup{Normal, call_id}.
    b.send(&Outgoing::DirectCallOffer(DirectCallOffer {
        caller_fingerprint: id_b.fingerprint.clone(),
        caller_alias: Some("B".to_string()),
        target_fingerprint: id_a.fingerprint.clone(),
        call_id: CALL2.to_string(),
        identity_pub: id_b.public,
        ephemeral_pub: [0u8; 32],
        signature: Vec::new(),
        supported_profiles: Vec::new(),
        caller_reflexive_addr: None,
        caller_local_addrs: Vec::new(),
        caller_build_version: None,
    }))
    .await?;
    say!("B/signal: DirectCallOffer {} to A sent", CALL2);
    let (offer, raw) = variant!(a.expect("DirectCallOffer").await?, DirectCallOffer);
    check_field("A/signal", "DirectCallOffer.caller_fingerprint", &offer.caller_fingerprint, &id_b.fingerprint, &raw)?;
    check_field("A/signal", "DirectCallOffer.call_id", &offer.call_id.as_str(), &CALL2, &raw)?;
    let (ringing, raw) = variant!(b.expect("CallRinging").await?, CallRinging);
    check_field("B/signal", "CallRinging.call_id", &ringing.call_id.as_str(), &CALL2, &raw)?;
    say!("A/signal: DirectCallOffer {} from B; B/signal: CallRinging", CALL2);
    a.send(&Outgoing::DirectCallAnswer(DirectCallAnswer::new(CALL2, "Reject"))).await?;
    say!("A/signal: DirectCallAnswer {} Reject sent", CALL2);
    let (h, raw) = variant!(b.expect("Hangup").await?, Hangup);
    check_field("B/signal", "Hangup.call_id", &h.call_id.as_deref(), &Some(CALL2), &raw)?;
    check_field("B/signal", "Hangup.reason", &h.reason.as_str(), &"Normal", &raw)?;
    say!("B/signal: Hangup {} ({})", CALL2, h.reason);

    // 13. Nothing else may arrive; leave cleanly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.expect_no_pending_signal()?;
    b.expect_no_pending_signal()?;
    a.check_healthy()?;
    b.check_healthy()?;
    let probe_problems = probe.stream_problems.lock().unwrap().clone();
    if !probe_problems.is_empty() {
        return Err(format!("relay signal streams:\n  {}", probe_problems.join("\n  ")));
    }
    a.conn.close(0u32.into(), b"");
    b.conn.close(0u32.into(), b"");
    for ep in [&a.endpoint, &b.endpoint, &probe.endpoint, &ra.endpoint, &rb.endpoint, &rc.endpoint] {
        let _ = timeout(Duration::from_secs(2), ep.wait_idle()).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Self test against the spec's test vectors (checks this client, not the relay)

fn selftest() -> Res<()> {
    let seed = [0x42u8; 32];
    let secret = hkdf32(&seed, b"warzone-ed25519");
    if hex(&secret) != "c420846dcde8fecab9b1fba9ce5186e5dad835391ad615d2f42cfdd6f52033f9" {
        return Err(format!("HKDF ed25519 secret vector mismatch: {}", hex(&secret)));
    }
    let id = Identity::from_seed(&seed);
    if hex(&id.public) != "a37a947ca8cc01976b7859cfb52eec500627d4c1a1e13c5ee6f7aa3b5c706909" {
        return Err(format!("ed25519 public vector mismatch: {}", hex(&id.public)));
    }
    if id.fingerprint != "518e:b935:62fa:9e34:e59c:28b6:7fc2:d384" {
        return Err(format!("fingerprint vector mismatch: {}", id.fingerprint));
    }
    if fingerprint(&[0u8; 32]) != "6668:7aad:f862:bd77:6c8f:c18b:8e9f:8e20" {
        return Err("fingerprint(zero key) vector mismatch".to_string());
    }
    let e = unhex("7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13");
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&e);
    let mut msg = eph.to_vec();
    msg.extend_from_slice(b"call-offer");
    let sig = id.key.sign(&msg);
    let want_sig = "420d9b9ea1d77724c83ec5017dbcaf48e8342323ca7c51384796bddda2d780ca\
                    7112f4ad831c070ec75012cc02e5061afd44beb521634ea1f137f84645423c0d";
    if hex(sig.as_ref()) != want_sig {
        return Err(format!("CallOffer signature vector mismatch: {}", hex(sig.as_ref())));
    }
    signature::UnparsedPublicKey::new(&signature::ED25519, &id.public[..])
        .verify(&msg, sig.as_ref())
        .map_err(|_| "own signature does not verify".to_string())?;
    let offer = Outgoing::CallOffer(CallOffer {
        identity_pub: id.public,
        ephemeral_pub: eph,
        signature: sig.as_ref().to_vec(),
        supported_profiles: vec![profile_good()],
        alias: Some("alice".to_string()),
    });
    let json = serde_json::to_string(&offer).map_err(|e| e.to_string())?;
    let want_json = concat!(
        r#"{"CallOffer":{"identity_pub":[163,122,148,124,168,204,1,151,107,120,89,207,181,46,236,80,6,39,212,193,161,225,60,94,230,247,170,59,92,112,105,9],"#,
        r#""ephemeral_pub":[123,78,144,155,190,127,254,68,196,101,162,32,3,125,96,142,227,88,151,211,30,249,114,240,127,116,137,44,176,247,63,19],"#,
        r#""signature":[66,13,155,158,161,215,119,36,200,62,197,1,125,188,175,72,232,52,35,35,202,124,81,56,71,150,189,221,162,215,128,202,113,18,244,173,131,28,7,14,199,80,18,204,2,229,6,26,253,68,190,181,33,99,78,161,241,55,248,70,69,66,60,13],"#,
        r#""supported_profiles":[{"codec":"Opus24k","fec_ratio":0.2,"frame_duration_ms":20,"frames_per_block":5}],"alias":"alice"}}"#
    );
    if json != want_json {
        return Err(format!("CallOffer JSON differs from the spec's example:\n  got  {}\n  want {}", json, want_json));
    }
    // Parsing: a RoomUpdate with missing/null optional fields, a QualityDirective without reason.
    let ru: Incoming = serde_json::from_str(
        r#"{"RoomUpdate":{"count":2,"participants":[{"fingerprint":"aaaa:bbbb","alias":"A","relay_label":null},{"fingerprint":""}]}}"#,
    )
    .map_err(|e| format!("RoomUpdate parse: {}", e))?;
    match ru {
        Incoming::RoomUpdate(u) if u.count == 2 && u.participants.len() == 2 => {}
        _ => return Err("RoomUpdate parse gave the wrong value".to_string()),
    }
    let qd: Incoming = serde_json::from_str(
        r#"{"QualityDirective":{"recommended_profile":{"codec":"Opus64k","fec_ratio":0.1,"frame_duration_ms":20,"frames_per_block":5}}}"#,
    )
    .map_err(|e| format!("QualityDirective parse: {}", e))?;
    match qd {
        Incoming::QualityDirective(q) if q.reason.is_none() && q.recommended_profile.codec == "Opus64k" => {}
        _ => return Err("QualityDirective parse gave the wrong value".to_string()),
    }
    // "_signal" messages: the spec's serde forms (unit variant as a bare string, omitted
    // optional fields, null alias) and parsing with missing, null and unknown fields.
    let enc = |m: &Outgoing| serde_json::to_string(m).map_err(|e| e.to_string());
    let zeros = format!("[{}]", vec!["0"; 32].join(","));
    let forms: Vec<(Outgoing, String)> = vec![
        (Outgoing::Reflect, r#""Reflect""#.to_string()),
        (
            Outgoing::Hangup(Hangup { reason: "Normal".to_string(), call_id: None }),
            r#"{"Hangup":{"reason":"Normal"}}"#.to_string(),
        ),
        (
            Outgoing::Hangup(Hangup { reason: "Busy".to_string(), call_id: Some("c1".to_string()) }),
            r#"{"Hangup":{"reason":"Busy","call_id":"c1"}}"#.to_string(),
        ),
        (
            Outgoing::DirectCallAnswer(DirectCallAnswer::new("cid", "Reject")),
            r#"{"DirectCallAnswer":{"call_id":"cid","accept_mode":"Reject"}}"#.to_string(),
        ),
        (
            Outgoing::RegisterPresence(RegisterPresence { identity_pub: [0; 32], signature: Vec::new(), alias: None }),
            format!(r#"{{"RegisterPresence":{{"identity_pub":{},"signature":[],"alias":null}}}}"#, zeros),
        ),
        (
            Outgoing::DirectCallOffer(DirectCallOffer {
                caller_fingerprint: "cf".to_string(),
                caller_alias: None,
                target_fingerprint: "tf".to_string(),
                call_id: "cid".to_string(),
                identity_pub: [0; 32],
                ephemeral_pub: [0; 32],
                signature: vec![5],
                supported_profiles: vec![profile_good()],
                caller_reflexive_addr: None,
                caller_local_addrs: Vec::new(),
                caller_build_version: None,
            }),
            format!(
                r#"{{"DirectCallOffer":{{"caller_fingerprint":"cf","caller_alias":null,"target_fingerprint":"tf","call_id":"cid","identity_pub":{},"ephemeral_pub":{},"signature":[5],"supported_profiles":[{{"codec":"Opus24k","fec_ratio":0.2,"frame_duration_ms":20,"frames_per_block":5}}]}}}}"#,
                zeros, zeros
            ),
        ),
        (
            Outgoing::MediaPathReport(MediaPathReport {
                call_id: "cid".to_string(),
                direct_ok: false,
                race_winner: "Relay".to_string(),
            }),
            r#"{"MediaPathReport":{"call_id":"cid","direct_ok":false,"race_winner":"Relay"}}"#.to_string(),
        ),
    ];
    for (m, want) in &forms {
        let got = enc(m)?;
        if &got != want {
            return Err(format!("signal JSON differs from the spec:\n  got  {}\n  want {}", got, want));
        }
    }
    if hex(&frame_json(enc(&Outgoing::Reflect)?.as_bytes())) != "00000009225265666c65637422" {
        return Err("framed \"Reflect\" differs from the spec's hex".to_string());
    }
    let setup: SignalIn = serde_json::from_str(
        r#"{"CallSetup":{"call_id":"cid","room":"call-cid","relay_addr":"203.0.113.5:4433","peer_direct_addr":null,"extra":[1,{"x":2}]}}"#,
    )
    .map_err(|e| format!("CallSetup parse: {}", e))?;
    match setup {
        SignalIn::CallSetup(c)
            if c.peer_direct_addr.is_none() && c.peer_local_addrs.is_empty() && c.room == "call-cid" => {}
        _ => return Err("CallSetup parse gave the wrong value".to_string()),
    }
    let ack: SignalIn = serde_json::from_str(r#"{"RegisterPresenceAck":{"success":false,"error":"x"}}"#)
        .map_err(|e| format!("RegisterPresenceAck parse: {}", e))?;
    match ack {
        SignalIn::RegisterPresenceAck(a)
            if !a.success && a.error.as_deref() == Some("x") && a.relay_build.is_none() => {}
        _ => return Err("RegisterPresenceAck parse gave the wrong value".to_string()),
    }
    let mpr: SignalIn = serde_json::from_str(r#"{"MediaPathReport":{"call_id":"c","direct_ok":true}}"#)
        .map_err(|e| format!("MediaPathReport parse: {}", e))?;
    match mpr {
        SignalIn::MediaPathReport(r) if r.direct_ok && r.race_winner.is_empty() => {}
        _ => return Err("MediaPathReport parse gave the wrong value".to_string()),
    }
    if serde_json::from_str::<SignalIn>(r#"{"RoomUpdate":{"count":0,"participants":[]}}"#).is_ok() {
        return Err("a RoomUpdate must not parse as a \"_signal\" message".to_string());
    }
    // Media header: the spec's ComfortNoise vector layout, and our own round trip.
    let d = media_datagram(3, 0x1234);
    if hex(&d[..12]) != "0000123400016c1000000000" {
        return Err(format!("media header layout wrong: {}", hex(&d[..12])));
    }
    if parse_media(&d) != Ok((3, 0x1234)) {
        return Err("media datagram round trip failed".to_string());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario "load": many quinn clients as benchmark load (see the top comment)

/// A load datagram is the 12-byte media header (Opus24k, no quality trailer), then the
/// magic, sender index u32, sequence u32 and send time u64 (us since the process start),
/// all big-endian, then filler up to --size.
const LOAD_MAGIC: &[u8; 4] = b"WZPL";
const LOAD_MIN_LEN: usize = 32;
/// The largest datagram the relay forwards (WZP_MEDIA_MAX_DATAGRAM_BYTES).
const LOAD_MAX_LEN: usize = 1150;
/// Receivers keep counting this long after the window (its last datagrams in flight).
const LOAD_DRAIN: Duration = Duration::from_millis(500);
/// Cap on waiting, after the joins, for every client's RoomUpdate listing its whole room.
const LOAD_ROOM_WAIT: Duration = Duration::from_secs(15);
/// Media starts this long after the last check, so every speaker's timer is set first.
const LOAD_LEAD: Duration = Duration::from_millis(100);
/// More join failures than this share of the clients is a setup failure.
const LOAD_MAX_JOIN_FAILURE: f64 = 0.05;

/// What every load client's datagram reader shares.
struct LoadShared {
    /// The process-wide start (the one the progress lines count from); send times are us
    /// since this instant, so sender and receiver (one process) read the same clock.
    start: Instant,
    rooms: usize,
    /// Speaker k is in room k % rooms; there are rooms x speakers of them.
    speakers_total: usize,
    size: usize,
    /// The measured window [lo, hi) in us since `start`; empty until the media starts.
    win_lo_us: AtomicU64,
    win_hi_us: AtomicU64,
    /// Set when counting ends (the end of the drain).
    stopped: AtomicBool,
}

impl LoadShared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn in_window(&self, sent_us: u64) -> bool {
        sent_us >= self.win_lo_us.load(Ordering::Relaxed) && sent_us < self.win_hi_us.load(Ordering::Relaxed)
    }
}

/// One receiver's counts (only its own reader task touches them until the end).
#[derive(Default)]
struct LoadRx {
    /// Datagrams from a speaker of its own room whose send time is in the window.
    delivered: u64,
    /// One-way latency of each of those, us.
    lat_us: Vec<u32>,
    /// From another room's speaker, or an unknown sender index.
    misrouted: u64,
    /// Not a load datagram of the expected size.
    invalid: u64,
    closed: Option<String>,
}

fn load_template(size: usize) -> Vec<u8> {
    let mut d = vec![0u8; size];
    // Header bytes 0-11 stay zero except seq and timestamp: V=0 T=0 CodecID=Opus24k Q=0,
    // FecRatio 0, fec_block/symbol 0, csrc_count 0.
    d[12..16].copy_from_slice(LOAD_MAGIC);
    for (i, b) in d.iter_mut().enumerate().skip(LOAD_MIN_LEN) {
        *b = i as u8;
    }
    d
}

fn load_datagram(template: &[u8], sender: u32, seq: u32, sent_us: u64) -> Bytes {
    let mut d = template.to_vec();
    d[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    d[4..8].copy_from_slice(&seq.wrapping_mul(20).to_be_bytes()); // 20 ms frames
    d[16..20].copy_from_slice(&sender.to_be_bytes());
    d[20..24].copy_from_slice(&seq.to_be_bytes());
    d[24..32].copy_from_slice(&sent_us.to_be_bytes());
    Bytes::from(d)
}

/// (sender, seq, send time in us) of a load datagram of `size` bytes.
fn parse_load(d: &[u8], size: usize) -> Option<(u32, u32, u64)> {
    if d.len() != size || d.len() < LOAD_MIN_LEN || &d[12..16] != LOAD_MAGIC {
        return None;
    }
    let mut u4 = [0u8; 4];
    let mut u8b = [0u8; 8];
    u4.copy_from_slice(&d[16..20]);
    let sender = u32::from_be_bytes(u4);
    u4.copy_from_slice(&d[20..24]);
    let seq = u32::from_be_bytes(u4);
    u8b.copy_from_slice(&d[24..32]);
    Some((sender, seq, u64::from_be_bytes(u8b)))
}

fn spawn_load_reader(conn: quinn::Connection, shared: Arc<LoadShared>, rx: Arc<Mutex<LoadRx>>, room: usize) {
    tokio::spawn(async move {
        loop {
            match conn.read_datagram().await {
                Ok(d) => {
                    let now_us = shared.now_us();
                    if shared.stopped.load(Ordering::Relaxed) {
                        continue;
                    }
                    let mut st = rx.lock().unwrap();
                    match parse_load(&d, shared.size) {
                        Some((sender, _seq, sent_us)) => {
                            let k = sender as usize;
                            if k >= shared.speakers_total || k % shared.rooms != room {
                                st.misrouted += 1;
                            } else if shared.in_window(sent_us) {
                                st.delivered += 1;
                                let lat = now_us.saturating_sub(sent_us).min(u64::from(u32::MAX));
                                st.lat_us.push(lat as u32);
                            }
                        }
                        None => st.invalid += 1,
                    }
                }
                Err(e) => {
                    rx.lock().unwrap().closed = Some(e.to_string());
                    return;
                }
            }
        }
    });
}

#[derive(Default)]
struct SpeakerResult {
    sent: u64,
    sent_in_window: u64,
    send_errors: u64,
    first_error: Option<String>,
    /// How late each tick ran after its due time, us.
    lag_us: Vec<u32>,
}

/// Speaker `k`: one datagram per `period` from `first` until send time `stop_us`, on its
/// own tokio interval. MissedTickBehavior::Skip: a tick the generator could not serve in
/// time is dropped, not sent late in a burst, and the next ones stay on the speaker's
/// phase grid (what is not sent is not expected, and the send lag shows it).
fn spawn_speaker(
    conn: quinn::Connection,
    shared: Arc<LoadShared>,
    k: u32,
    first: Instant,
    period: Duration,
    stop_us: u64,
) -> tokio::task::JoinHandle<SpeakerResult> {
    tokio::spawn(async move {
        let template = load_template(shared.size);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(first), period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut r = SpeakerResult::default();
        let mut seq: u32 = 0;
        loop {
            let due = tick.tick().await;
            let lag = tokio::time::Instant::now().saturating_duration_since(due);
            let sent_us = shared.now_us();
            if sent_us >= stop_us {
                break;
            }
            r.lag_us.push(lag.as_micros().min(u128::from(u32::MAX)) as u32);
            match conn.send_datagram(load_datagram(&template, k, seq, sent_us)) {
                Ok(()) => {
                    r.sent += 1;
                    if shared.in_window(sent_us) {
                        r.sent_in_window += 1;
                    }
                }
                Err(e) => {
                    r.send_errors += 1;
                    let lost = matches!(e, quinn::SendDatagramError::ConnectionLost(_));
                    if r.first_error.is_none() {
                        r.first_error = Some(e.to_string());
                    }
                    if lost {
                        break;
                    }
                }
            }
            seq = seq.wrapping_add(1);
        }
        r
    })
}

/// CPU time of process `pid` ("self" or a number) in ns. With `schedstat`: the sum over
/// its threads of /proc/PID/task/*/schedstat's first field (ns on a CPU; threads that
/// have exited are not counted); else utime + stime of /proc/PID/stat at 100 ticks/s.
fn proc_cpu_ns(pid: &str, schedstat: bool) -> Option<u64> {
    if schedstat {
        let mut sum = 0u64;
        let mut n = 0;
        for e in std::fs::read_dir(format!("/proc/{}/task", pid)).ok()?.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
                if let Some(v) = s.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()) {
                    sum += v;
                    n += 1;
                }
            }
        }
        return if n > 0 { Some(sum) } else { None };
    }
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// Whether per-thread schedstat works for `pid` (some kernels lack it or report zeros).
fn schedstat_works(pid: &str) -> bool {
    matches!(proc_cpu_ns(pid, true), Some(n) if n > 0)
}

/// VmRSS of process `pid` in kB.
fn proc_rss_kb(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid)).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct ProcSnap {
    at: Instant,
    relay_cpu_ns: Option<u64>,
    relay_rss_kb: Option<u64>,
    gen_cpu_ns: Option<u64>,
}

/// The relay's CPU and RSS and our own CPU now; then SIGUSR1 to the relay (it logs a
/// "stats:" line). `kill` runs as a child reaped later, so this does not wait for it.
fn proc_snapshot(relay: Option<(&str, bool)>, gen_schedstat: bool, kills: &mut Vec<std::process::Child>) -> ProcSnap {
    let at = Instant::now();
    let gen_cpu_ns = proc_cpu_ns("self", gen_schedstat);
    let (relay_cpu_ns, relay_rss_kb) = match relay {
        Some((pid, sched)) => (proc_cpu_ns(pid, sched), proc_rss_kb(pid)),
        None => (None, None),
    };
    if let Some((pid, _)) = relay {
        match std::process::Command::new("kill")
            .arg("-USR1")
            .arg(pid)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => kills.push(child),
            Err(e) => progress(&format!("load: cannot run kill -USR1 {}: {}", pid, e)),
        }
    }
    ProcSnap {
        at,
        relay_cpu_ns,
        relay_rss_kb,
        gen_cpu_ns,
    }
}

/// A progress line, printed even while QUIET mutes the clients' own lines.
fn progress(msg: &str) {
    println!("[{:>6} ms] {}", elapsed_ms(), msg);
}

fn process_start() -> Instant {
    elapsed_ms();
    START.lock().unwrap().unwrap_or_else(Instant::now)
}

#[derive(Serialize, Default)]
struct Pcts {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

fn round_to(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Nearest-rank percentiles of `us` (sorted here) in ms.
fn percentiles_ms(us: &mut [u32]) -> Pcts {
    if us.is_empty() {
        return Pcts::default();
    }
    us.sort_unstable();
    let at = |q: f64| -> Option<f64> {
        let rank = ((q * us.len() as f64).ceil() as usize).max(1).min(us.len());
        Some(round_to(f64::from(us[rank - 1]) / 1000.0, 3))
    };
    Pcts {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn fmt_ms(x: Option<f64>) -> String {
    match x {
        Some(v) => format!("{:.2}", v),
        None => "-".to_string(),
    }
}

#[derive(Serialize)]
struct RelayJson {
    pid: u32,
    cpu_s: Option<f64>,
    rss_kb_start: Option<u64>,
    rss_kb_end: Option<u64>,
    cpu_us_per_delivered: Option<f64>,
    /// "schedstat" (per-thread ns) or "stat" (utime + stime, 10 ms ticks)
    cpu_source: &'static str,
}

#[derive(Serialize)]
struct LoadJson {
    rooms: usize,
    participants: usize,
    speakers: usize,
    rate: u32,
    size: usize,
    clients: usize,
    joined: usize,
    join_failures: usize,
    /// Wall time from the first join to the last CallAnswer.
    join_s: f64,
    /// Per client, from getting a join slot to its verified CallAnswer.
    join_ms: Pcts,
    room_wait_s: f64,
    /// Datagrams the speakers sent with a send time in the window.
    sent_in_window: u64,
    send_errors: u64,
    expected: u64,
    delivered: u64,
    delivery_ratio: Option<f64>,
    misrouted: u64,
    invalid: u64,
    closed_connections: usize,
    latency_ms: Pcts,
    send_lag_ms: Pcts,
    window_s: f64,
    window_measured_s: f64,
    relay: Option<RelayJson>,
    gen_cpu_s: Option<f64>,
    gen_cpu_us_per_delivered: Option<f64>,
    runtime_threads: usize,
    missed_tick_behavior: &'static str,
}

struct LoadMember {
    room: usize,
    part: usize,
    client: Client,
    rx: Arc<Mutex<LoadRx>>,
    join_time: Duration,
}

fn speakers_per_room(o: &Opts) -> usize {
    o.speakers.unwrap_or(o.participants)
}

/// Cap on the join phase: generous, every join has its own step timeouts too.
fn load_join_cap(o: &Opts) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(100) * (o.rooms * o.participants) as u32
}

/// Cap on the whole load scenario.
fn load_limit(o: &Opts) -> Duration {
    load_join_cap(o)
        + LOAD_ROOM_WAIT
        + LOAD_LEAD
        + Duration::from_secs_f64(o.warmup + o.duration)
        + LOAD_DRAIN
        + Duration::from_secs(15)
}

/// Reads `c`'s signals until a RoomUpdate lists every fingerprint of `want`.
async fn wait_whole_room(c: &mut Client, want: &[String], deadline: Instant) -> Res<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let what = format!("a RoomUpdate listing all {} joined members", want.len());
        if let Incoming::RoomUpdate(u) = c.next_signal(&what, left).await? {
            if want.iter().all(|f| u.participants.iter().any(|p| &p.fingerprint == f)) {
                return Ok(());
            }
        }
    }
}

async fn load(o: &Opts) -> Res<()> {
    let addr = match o.addr {
        Some(a) => a,
        None => return Err("--addr is required".to_string()),
    };
    QUIET.store(!o.verbose, Ordering::Relaxed);
    let rooms = o.rooms;
    let per_room = o.participants;
    let spk = speakers_per_room(o);
    let clients_total = rooms * per_room;
    let speakers_total = rooms * spk;
    let period = Duration::from_secs_f64(1.0 / f64::from(o.rate));

    let relay_pid = o.relay_pid.map(|p| p.to_string());
    let relay_sched = match &relay_pid {
        Some(pid) => {
            if proc_cpu_ns(pid, false).is_none() {
                return Err(format!("--relay-pid {}: cannot read /proc/{}/stat (no such process?)", pid, pid));
            }
            schedstat_works(pid)
        }
        None => false,
    };
    let gen_sched = schedstat_works("self");

    let shared = Arc::new(LoadShared {
        start: process_start(),
        rooms,
        speakers_total,
        size: o.size,
        win_lo_us: AtomicU64::new(u64::MAX),
        win_hi_us: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
    });

    // --- joins, at most --concurrency in flight, room after room ---------------------
    progress(&format!(
        "load: {} rooms x {} participants = {} clients (each its own endpoint and UDP socket), \
         {} joins in flight, relay {}",
        rooms, per_room, clients_total, o.concurrency, addr
    ));
    let sem = Arc::new(tokio::sync::Semaphore::new(o.concurrency));
    let join_started = Instant::now();
    let mut handles = Vec::with_capacity(clients_total);
    for r in 0..rooms {
        let room = format!("{}-{}", o.room_prefix, r);
        for p in 0..per_room {
            let name = format!("{}/{}", room, p);
            let d = digest::digest(&digest::SHA256, format!("wzp-interop load {} {}", room, p).as_bytes());
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&d.as_ref()[..32]);
            let rx = Arc::new(Mutex::new(LoadRx::default()));
            let sink = DgramSink::Load {
                shared: shared.clone(),
                rx: rx.clone(),
                room: r,
            };
            let sem = sem.clone();
            let room = room.clone();
            let verbose = o.verbose;
            handles.push(tokio::spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|e| format!("{}: join pacing: {}", name, e))?;
                let t = Instant::now();
                let ep = new_endpoint()?;
                let (client, _, _) = Client::join_into(&name, 0, &seed, &room, addr, ep, verbose, sink).await?;
                Ok::<LoadMember, String>(LoadMember {
                    room: r,
                    part: p,
                    client,
                    rx,
                    join_time: t.elapsed(),
                })
            }));
        }
    }
    let join_deadline = join_started + load_join_cap(o);
    let mut joined: Vec<LoadMember> = Vec::with_capacity(clients_total);
    let mut failures: Vec<String> = Vec::new();
    for mut h in handles {
        let left = join_deadline.saturating_duration_since(Instant::now());
        match timeout(left, &mut h).await {
            Ok(Ok(Ok(m))) => joined.push(m),
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("join task failed: {}", e)),
            Err(_) => {
                h.abort();
                failures.push(format!("join did not finish within {} s", load_join_cap(o).as_secs()));
            }
        }
    }
    let join_s = join_started.elapsed().as_secs_f64();
    let mut join_us: Vec<u32> = joined
        .iter()
        .map(|m| m.join_time.as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    let join_ms = percentiles_ms(&mut join_us);
    let slowest = joined
        .iter()
        .max_by_key(|m| m.join_time)
        .map(|m| format!(", slowest {}", m.client.name))
        .unwrap_or_default();
    progress(&format!(
        "load: {} of {} joined in {:.2} s (per client p50 {} ms, max {} ms{}), {} failed",
        joined.len(),
        clients_total,
        join_s,
        fmt_ms(join_ms.p50),
        fmt_ms(join_ms.max),
        slowest,
        failures.len()
    ));
    for e in failures.iter().take(5) {
        progress(&format!("load: join failure: {}", e));
    }
    if joined.is_empty() {
        return Err(format!(
            "no client could join: relay unreachable? first error: {}",
            failures.first().cloned().unwrap_or_default()
        ));
    }
    let too_many = |n: usize| n as f64 > LOAD_MAX_JOIN_FAILURE * clients_total as f64;
    if too_many(failures.len()) {
        return Err(format!(
            "{} of {} joins failed (more than {}%); first: {}",
            failures.len(),
            clients_total,
            LOAD_MAX_JOIN_FAILURE * 100.0,
            failures[0]
        ));
    }

    // --- every client must see a RoomUpdate listing its whole (joined) room ------------
    let room_wait_started = Instant::now();
    let mut room_fps: Vec<Vec<String>> = vec![Vec::new(); rooms];
    for m in &joined {
        room_fps[m.room].push(m.client.id.fingerprint.clone());
    }
    let room_deadline = room_wait_started + LOAD_ROOM_WAIT;
    let mut ready: Vec<LoadMember> = Vec::with_capacity(joined.len());
    for mut m in joined {
        match wait_whole_room(&mut m.client, &room_fps[m.room], room_deadline).await {
            Ok(()) => ready.push(m),
            Err(e) => {
                failures.push(e);
                m.client.conn.close(quinn::VarInt::from_u32(0), b"hangup");
            }
        }
    }
    let room_wait_s = room_wait_started.elapsed().as_secs_f64();
    progress(&format!(
        "load: {} clients saw their whole room in a RoomUpdate ({:.2} s)",
        ready.len(),
        room_wait_s
    ));
    if ready.is_empty() || too_many(failures.len()) {
        return Err(format!(
            "{} of {} clients failed to join or to see their whole room; last: {}",
            failures.len(),
            clients_total,
            failures.last().cloned().unwrap_or_default()
        ));
    }
    for m in &ready {
        match m.client.conn.max_datagram_size() {
            Some(n) if n >= o.size => {}
            other => {
                return Err(format!(
                    "{}: cannot send {}-byte datagrams: max_datagram_size() = {:?}",
                    m.client.name, o.size, other
                ))
            }
        }
    }

    // --- media -------------------------------------------------------------------------
    let mut members_in_room = vec![0u64; rooms];
    for m in &ready {
        members_in_room[m.room] += 1;
    }
    let t0 = Instant::now() + LOAD_LEAD;
    let t0_us = t0.duration_since(shared.start).as_micros() as u64;
    let warmup_us = (o.warmup * 1e6) as u64;
    let duration_us = (o.duration * 1e6) as u64;
    let lo_us = t0_us + warmup_us;
    let hi_us = lo_us + duration_us;
    let stop_us = hi_us + LOAD_DRAIN.as_micros() as u64;
    shared.win_lo_us.store(lo_us, Ordering::Relaxed);
    shared.win_hi_us.store(hi_us, Ordering::Relaxed);
    let mut speakers: Vec<(usize, tokio::task::JoinHandle<SpeakerResult>)> = Vec::new();
    for m in &ready {
        if m.part >= spk {
            continue;
        }
        // Speaker numbering k = participant x rooms + room puts a room's speakers
        // period / S apart, as independent clients' phases would be.
        let k = m.part * rooms + m.room;
        let offset = period.mul_f64(k as f64 / speakers_total as f64);
        speakers.push((
            m.room,
            spawn_speaker(m.client.conn.clone(), shared.clone(), k as u32, t0 + offset, period, stop_us),
        ));
    }
    progress(&format!(
        "load: {} speakers x {} pps x {} bytes (tokio interval each, MissedTickBehavior::Skip, phases spread over {} us), \
         warmup {} s, window {} s, drain {} ms",
        speakers.len(),
        o.rate,
        o.size,
        period.as_micros(),
        o.warmup,
        o.duration,
        LOAD_DRAIN.as_millis()
    ));
    let at_us = |us: u64| tokio::time::Instant::from_std(shared.start + Duration::from_micros(us));
    let relay_arg = relay_pid.as_deref().map(|p| (p, relay_sched));
    let mut kills: Vec<std::process::Child> = Vec::new();
    tokio::time::sleep_until(at_us(lo_us)).await;
    let snap0 = proc_snapshot(relay_arg, gen_sched, &mut kills);
    progress("load: window starts");
    tokio::time::sleep_until(at_us(hi_us)).await;
    let snap1 = proc_snapshot(relay_arg, gen_sched, &mut kills);
    progress("load: window ends, draining");
    tokio::time::sleep_until(at_us(stop_us)).await;
    shared.stopped.store(true, Ordering::Relaxed);

    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut expected = 0u64;
    let mut lag_us: Vec<u32> = Vec::new();
    let mut send_problems: Vec<String> = Vec::new();
    for (room, h) in speakers {
        match within("a speaker to stop", period + Duration::from_secs(2), h).await? {
            Ok(r) => {
                sent += r.sent_in_window;
                send_errors += r.send_errors;
                expected += r.sent_in_window * members_in_room[room].saturating_sub(1);
                lag_us.extend_from_slice(&r.lag_us);
                if let Some(e) = r.first_error {
                    send_problems.push(e);
                }
            }
            Err(e) => return Err(format!("speaker task failed: {}", e)),
        }
    }
    let mut delivered = 0u64;
    let mut misrouted = 0u64;
    let mut invalid = 0u64;
    let mut closed = 0usize;
    let mut lat_us: Vec<u32> = Vec::new();
    for m in &ready {
        let st = m.rx.lock().unwrap();
        delivered += st.delivered;
        misrouted += st.misrouted;
        invalid += st.invalid;
        lat_us.extend_from_slice(&st.lat_us);
        if st.closed.is_some() {
            closed += 1;
        }
    }
    for m in ready.iter().take(3) {
        if let Some(e) = &m.rx.lock().unwrap().closed {
            progress(&format!("load: {}: connection closed during the run: {}", m.client.name, e));
        }
    }
    for e in send_problems.iter().take(3) {
        progress(&format!("load: send_datagram failed: {}", e));
    }

    let latency_ms = percentiles_ms(&mut lat_us);
    let send_lag_ms = percentiles_ms(&mut lag_us);
    let window_measured_s = snap1.at.duration_since(snap0.at).as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x)),
        _ => None,
    };
    let relay_cpu_ns = delta(snap0.relay_cpu_ns, snap1.relay_cpu_ns);
    let gen_cpu_ns = delta(snap0.gen_cpu_ns, snap1.gen_cpu_ns);
    let per_delivered = |ns: Option<u64>| match ns {
        Some(n) if delivered > 0 => Some(round_to(n as f64 / 1000.0 / delivered as f64, 3)),
        _ => None,
    };
    let delivery_ratio = if expected > 0 {
        Some(round_to(delivered as f64 / expected as f64, 6))
    } else {
        None
    };
    let relay_json = o.relay_pid.map(|pid| RelayJson {
        pid,
        cpu_s: relay_cpu_ns.map(|n| round_to(n as f64 / 1e9, 4)),
        rss_kb_start: snap0.relay_rss_kb,
        rss_kb_end: snap1.relay_rss_kb,
        cpu_us_per_delivered: per_delivered(relay_cpu_ns),
        cpu_source: if relay_sched { "schedstat" } else { "stat" },
    });
    let report = LoadJson {
        rooms,
        participants: per_room,
        speakers: spk,
        rate: o.rate,
        size: o.size,
        clients: clients_total,
        joined: ready.len(),
        join_failures: clients_total - ready.len(),
        join_s: round_to(join_s, 3),
        join_ms,
        room_wait_s: round_to(room_wait_s, 3),
        sent_in_window: sent,
        send_errors,
        expected,
        delivered,
        delivery_ratio,
        misrouted,
        invalid,
        closed_connections: closed,
        latency_ms,
        send_lag_ms,
        window_s: o.duration,
        window_measured_s: round_to(window_measured_s, 4),
        relay: relay_json,
        gen_cpu_s: gen_cpu_ns.map(|n| round_to(n as f64 / 1e9, 4)),
        gen_cpu_us_per_delivered: per_delivered(gen_cpu_ns),
        runtime_threads: o.runtime_threads,
        missed_tick_behavior: "Skip",
    };

    let relay_part = match &report.relay {
        Some(r) => format!(
            "relay cpu {} s = {} us/delivered, rss {} -> {} kB",
            r.cpu_s.map(|x| format!("{:.3}", x)).unwrap_or_else(|| "?".to_string()),
            r.cpu_us_per_delivered.map(|x| format!("{:.2}", x)).unwrap_or_else(|| "?".to_string()),
            r.rss_kb_start.map(|x| x.to_string()).unwrap_or_else(|| "?".to_string()),
            r.rss_kb_end.map(|x| x.to_string()).unwrap_or_else(|| "?".to_string())
        ),
        None => "relay cpu not measured (no --relay-pid)".to_string(),
    };
    println!(
        "LOAD {}x{} ({} speaking) {} pps {} B: joined {}/{} in {:.2} s; window {} s: delivered {} of {} ({}), \
         latency ms p50 {} p90 {} p99 {} max {}; send lag p99 {} ms; {}; generator cpu {} s{}",
        rooms,
        per_room,
        spk,
        o.rate,
        o.size,
        report.joined,
        clients_total,
        join_s,
        o.duration,
        delivered,
        expected,
        match delivery_ratio {
            Some(r) => format!("{:.4}%", r * 100.0),
            None => "-".to_string(),
        },
        fmt_ms(report.latency_ms.p50),
        fmt_ms(report.latency_ms.p90),
        fmt_ms(report.latency_ms.p99),
        fmt_ms(report.latency_ms.max),
        fmt_ms(report.send_lag_ms.p99),
        relay_part,
        report.gen_cpu_s.map(|x| format!("{:.3}", x)).unwrap_or_else(|| "?".to_string()),
        if misrouted + invalid > 0 || closed > 0 {
            format!("; {} misrouted, {} invalid, {} connections closed", misrouted, invalid, closed)
        } else {
            String::new()
        }
    );
    let json = serde_json::to_string(&report).map_err(|e| format!("encoding the report: {}", e))?;
    println!("LOAD_JSON {}", json);

    // --- leave ---------------------------------------------------------------------------
    for m in &ready {
        m.client.conn.close(quinn::VarInt::from_u32(0), b"hangup");
    }
    let mut idle = Vec::with_capacity(ready.len());
    for m in &ready {
        let ep = m.client.endpoint.clone();
        idle.push(tokio::spawn(async move { ep.wait_idle().await }));
    }
    let _ = timeout(Duration::from_secs(2), async {
        for h in idle {
            let _ = h.await;
        }
    })
    .await;
    for mut k in kills {
        let _ = k.wait();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: wzp-interop --addr IP:PORT [--packets N] [--relay-fingerprint FP] [--cycles N] [--shared-endpoint] [-v] [fanout|churn|signal|selftest]\n       \
         wzp-interop --addr IP:PORT [--rooms R] [--participants P] [--speakers S] [--rate PPS] [--size BYTES] [--duration SEC] [--warmup SEC] [--concurrency N] [--room-prefix STR] [--relay-pid PID] [--runtime-threads N] load"
    );
    std::process::exit(2);
}

/// The value of option `opt` parsed as a `T`, or usage.
fn option_value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, opt: &str) -> T {
    let v = args.next().unwrap_or_else(|| usage());
    match v.parse::<T>() {
        Ok(x) => x,
        Err(_) => {
            eprintln!("wzp-interop: bad {} {:?}", opt, v);
            usage()
        }
    }
}

/// Exits with usage unless `ok`.
fn check_option(ok: bool, what: &str) {
    if !ok {
        eprintln!("wzp-interop: {}", what);
        usage();
    }
}

fn parse_args() -> Opts {
    let mut o = Opts {
        addr: None,
        scenario: "fanout".to_string(),
        packets: 50,
        cycles: 60,
        relay_fp: None,
        shared_endpoint: false,
        verbose: false,
        rooms: 40,
        participants: 5,
        speakers: None,
        rate: 50,
        size: 112,
        duration: 8.0,
        warmup: 2.0,
        concurrency: 50,
        room_prefix: "load".to_string(),
        relay_pid: None,
        runtime_threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rooms" => o.rooms = option_value(&mut args, &a),
            "--participants" => o.participants = option_value(&mut args, &a),
            "--speakers" => o.speakers = Some(option_value(&mut args, &a)),
            "--rate" => o.rate = option_value(&mut args, &a),
            "--size" => o.size = option_value(&mut args, &a),
            "--duration" => o.duration = option_value(&mut args, &a),
            "--warmup" => o.warmup = option_value(&mut args, &a),
            "--concurrency" => o.concurrency = option_value(&mut args, &a),
            "--room-prefix" => o.room_prefix = option_value(&mut args, &a),
            "--relay-pid" => o.relay_pid = Some(option_value(&mut args, &a)),
            "--runtime-threads" => o.runtime_threads = option_value(&mut args, &a),
            "--addr" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse() {
                    Ok(x) => o.addr = Some(x),
                    Err(_) => {
                        eprintln!("wzp-interop: bad --addr {:?}", v);
                        usage()
                    }
                }
            }
            "--packets" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse::<u16>() {
                    Ok(n) if n > 0 => o.packets = n,
                    _ => {
                        eprintln!("wzp-interop: bad --packets {:?}", v);
                        usage()
                    }
                }
            }
            "--cycles" => {
                let v = args.next().unwrap_or_else(|| usage());
                match v.parse::<u32>() {
                    Ok(n) if n > 0 => o.cycles = n,
                    _ => {
                        eprintln!("wzp-interop: bad --cycles {:?}", v);
                        usage()
                    }
                }
            }
            "--relay-fingerprint" => o.relay_fp = Some(args.next().unwrap_or_else(|| usage())),
            "--shared-endpoint" => o.shared_endpoint = true,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => usage(),
            s if !s.starts_with('-') => o.scenario = s.to_string(),
            _ => {
                eprintln!("wzp-interop: unknown option {:?}", a);
                usage()
            }
        }
    }
    check_option(o.rooms >= 1 && o.rooms <= 100_000, "--rooms must be 1..100000");
    check_option(o.participants >= 2 && o.participants <= 10_000, "--participants must be 2..10000");
    check_option(
        o.rooms * o.participants <= 100_000,
        "--rooms x --participants must be at most 100000",
    );
    let spk = speakers_per_room(&o);
    check_option(spk >= 1 && spk <= o.participants, "--speakers must be 1..participants");
    check_option(o.rate >= 1 && o.rate <= 1000, "--rate must be 1..1000 packets/s");
    check_option(
        o.size >= LOAD_MIN_LEN && o.size <= LOAD_MAX_LEN,
        &format!("--size must be {}..{} bytes", LOAD_MIN_LEN, LOAD_MAX_LEN),
    );
    check_option(
        o.duration.is_finite() && o.duration > 0.0 && o.duration <= 3600.0,
        "--duration must be in (0, 3600] s",
    );
    check_option(
        o.warmup.is_finite() && o.warmup >= 0.0 && o.warmup <= 3600.0,
        "--warmup must be in [0, 3600] s",
    );
    check_option(o.concurrency >= 1, "--concurrency must be at least 1");
    check_option(
        !o.room_prefix.is_empty()
            && o.room_prefix.len() <= 40
            && o.room_prefix.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !o.room_prefix.starts_with('-'),
        "--room-prefix must be 1..40 of a-z, 0-9, '-' (it becomes the TLS server name)",
    );
    check_option(o.runtime_threads >= 1 && o.runtime_threads <= 64, "--runtime-threads must be 1..64");
    o
}

fn main() {
    let o = parse_args();
    elapsed_ms();
    if let Err(e) = selftest() {
        println!("FAIL (client self-test, not a relay problem): {}", e);
        std::process::exit(1);
    }
    if o.scenario == "selftest" {
        println!("PASS selftest");
        return;
    }
    if o.scenario != "fanout" && o.scenario != "churn" && o.scenario != "signal" && o.scenario != "load" {
        eprintln!("wzp-interop: unknown scenario {:?}", o.scenario);
        usage();
    }
    // One thread (current_thread) unless the load scenario asks for more workers.
    let threads = if o.scenario == "load" { o.runtime_threads } else { 1 };
    let mut builder = if threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            println!("FAIL: cannot start the tokio runtime: {}", e);
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        let run = async {
            if o.scenario == "churn" {
                churn(&o).await
            } else if o.scenario == "signal" {
                signal(&o).await
            } else if o.scenario == "load" {
                load(&o).await
            } else {
                fanout(&o).await
            }
        };
        let limit = if o.scenario == "load" { load_limit(&o) } else { OVERALL_LIMIT };
        match timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("scenario did not finish within {} s", limit.as_secs())),
        }
    });
    match result {
        Ok(()) => {
            if o.scenario == "load" {
                // load printed its LOAD and LOAD_JSON lines itself.
            } else if o.scenario == "churn" {
                println!(
                    "PASS churn: {} join/leave cycles, {} RoomUpdates to the client that stayed",
                    o.cycles,
                    2 * o.cycles + 1
                );
            } else if o.scenario == "signal" {
                println!(
                    "PASS signal: presence, Ping, Reflect (+ a reflect probe), call {} accepted with {} \
                     datagrams each way in call-{}, a non-party refused, call {} rejected",
                    CALL1, CALL_PACKETS, CALL1, CALL2
                );
            } else {
                println!(
                    "PASS fanout: 5 clients, 2 rooms, {} datagrams per client{}",
                    o.packets,
                    if o.shared_endpoint { ", one shared UDP socket" } else { "" }
                );
            }
            rt.shutdown_timeout(Duration::from_millis(100));
            std::process::exit(0);
        }
        Err(e) => {
            println!("FAIL {}: {}", o.scenario, e);
            rt.shutdown_timeout(Duration::from_millis(100));
            std::process::exit(1);
        }
    }
}
